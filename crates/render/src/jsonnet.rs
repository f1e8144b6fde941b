//! The Jsonnet renderer: evaluates the app's entry files in-process with jrsonnet (no tool spawn, no
//! network), with ext vars, top-level arguments and library directories (`jpath`).
//!
//! Confinement: every `import`, `importstr` and `importbin` goes through [`ConfinedImports`], which
//! refuses absolute paths, paths that leave the repository lexically (`..`) and paths whose symlinks
//! resolve outside it — before anything outside is touched. Library directories are confined the
//! same way. Every file the evaluation read (and every candidate path it probed and found absent) is
//! recorded with its content hash: that record is the render's input set for the render cache.
//!
//! Output, as Argo CD reads a `.jsonnet` file: the value is one object or an array of objects
//! (nested arrays are flattened, `kind: List` is expanded, `null` is skipped). An object whose values
//! are all objects and that has no `kind` (the kubecfg/Tanka "object of objects" layout) is refused
//! with a hint, because Argo CD refuses it too and guessing which fields are objects is ambiguous.
//! Provenance: the entry file and the value's index in the flattened output.
//!
//! Limits: the jsonnet call depth (`Limits::jsonnet_max_stack`, like `jsonnet --max-stack`), the
//! output size (`Limits::max_output_bytes`, counted while the value is converted, so a huge value
//! stops early), the number of objects, the size of each file read, and the evaluation time
//! (`Limits::process_timeout`). jrsonnet has no interruption point, so the evaluation runs on its own
//! thread: at the deadline the render fails and the thread is left to finish on its own (see
//! ARCHITECTURE.md).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::ErrorKind as IoErrorKind;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;

use jrsonnet_evaluator::error::{Error as JrError, ErrorKind};
use jrsonnet_evaluator::function::CallLocation;
use jrsonnet_evaluator::tla::TlaArg;
use jrsonnet_evaluator::trace::{CompactFormat, PathResolver, TraceFormat};
use jrsonnet_evaluator::{
    AsPathLike, IStr, ImportResolver, ResultExt, SourcePath, State, Val, apply_tla,
    ensure_sufficient_stack, in_description_frame,
};
use jrsonnet_gcmodule::Acyclic;
use jrsonnet_stdlib::TracePrinter;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::confine::{RepoRoot, normalize};
use crate::{Limits, RenderError, RenderedObject, yaml};

/// The evaluator, as named in `Rendered::tool_version` and in the cache key. Keep it equal to the
/// `=` pin in Cargo.toml.
pub const EVALUATOR: &str = "jrsonnet 0.5.0-pre98";

/// A value handed to the evaluation: a string, or Jsonnet code (`--ext-code`, `--tla-code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonnetValue {
    String(String),
    Code(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonnetOptions {
    /// The entry file, relative to the app directory. Default: every `*.jsonnet` file directly in
    /// the app directory, in name order (`.libsonnet` files are libraries, never entries).
    pub main: Option<String>,
    /// `std.extVar(name)`.
    pub ext_vars: BTreeMap<String, JsonnetValue>,
    /// Top-level arguments, applied when an entry file evaluates to a function.
    pub tlas: BTreeMap<String, JsonnetValue>,
    /// Library directories, relative to the repository root (Argo CD's `libs`), searched after the
    /// importing file's directory; the last one is searched first (`jsonnet -J`: right-most wins).
    pub jpath: Vec<String>,
}

/// A file the evaluation looked at: its content hash, or `None` when it was probed and absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// Relative to the repository root: a new commit is checked out elsewhere, and the record must
    /// still match there.
    pub path: PathBuf,
    pub digest: Option<Vec<u8>>,
}

/// What an evaluation produced: the objects and every input it looked at.
#[derive(Debug)]
pub struct Evaluated {
    pub objects: Vec<RenderedObject>,
    pub inputs: Vec<InputRecord>,
}

/// The entry files (canonical, confined), in evaluation order.
pub fn entry_files(
    root: &RepoRoot,
    app_dir: &Path,
    options: &JsonnetOptions,
) -> Result<Vec<PathBuf>, RenderError> {
    let shown_app = root.display_path(app_dir);
    if let Some(main) = &options.main {
        let entry = root.resolve(app_dir, main, &shown_app)?;
        if !entry.is_file() {
            return Err(RenderError::Options {
                path: shown_app,
                message: format!("jsonnet main file {main:?} is not a file"),
            });
        }
        return Ok(vec![entry]);
    }
    let io = |source| RenderError::Io {
        path: shown_app.clone(),
        source,
    };
    let mut names: Vec<PathBuf> = std::fs::read_dir(app_dir)
        .map_err(io)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    names.sort();
    let mut entries = Vec::new();
    for path in names {
        if path.extension().is_some_and(|e| e == "jsonnet") {
            let resolved = root.confine(&path, &shown_app)?;
            if resolved.is_file() {
                entries.push(resolved);
            }
        }
    }
    if entries.is_empty() {
        return Err(RenderError::Detection {
            path: shown_app,
            reason: "the jsonnet renderer found no *.jsonnet file in the app directory".into(),
        });
    }
    Ok(entries)
}

/// Library directories, canonical and confined, in search order (last `jpath` entry first).
pub fn library_dirs(
    root: &RepoRoot,
    app_dir: &Path,
    options: &JsonnetOptions,
) -> Result<Vec<PathBuf>, RenderError> {
    let shown_app = root.display_path(app_dir);
    let mut dirs = Vec::new();
    for dir in options.jpath.iter().rev() {
        let resolved = root.resolve(root.path(), dir, &shown_app)?;
        if !resolved.is_dir() {
            return Err(RenderError::Options {
                path: shown_app.clone(),
                message: format!("jsonnet library directory {dir:?} is not a directory"),
            });
        }
        dirs.push(resolved);
    }
    Ok(dirs)
}

/// Evaluates the entry files on a thread of their own, waiting at most `limits.process_timeout`.
pub fn evaluate(
    root: &RepoRoot,
    app_dir: &Path,
    entries: Vec<PathBuf>,
    library_dirs: Vec<PathBuf>,
    options: &JsonnetOptions,
    limits: &Limits,
) -> Result<Evaluated, RenderError> {
    let shown_app = root.display_path(app_dir);
    let job = Job {
        root: root.clone(),
        app_dir: app_dir.to_path_buf(),
        entries,
        library_dirs,
        options: options.clone(),
        limits: limits.clone(),
    };
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("jsonnet".into())
        // jrsonnet grows its stack on the heap (stacker) for deep values; this is the base.
        .stack_size(8 * 1024 * 1024)
        .spawn(move || {
            // The receiver is gone only after a timeout; the result is then of no use.
            let _ = sender.send(job.run());
        })
        .map_err(|source| RenderError::Io {
            path: shown_app.clone(),
            source,
        })?;
    match receiver.recv_timeout(limits.process_timeout) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(RenderError::ToolTimeout {
            tool: EVALUATOR.into(),
            path: shown_app,
            timeout: limits.process_timeout,
        }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(RenderError::Options {
            path: shown_app,
            message: "the jsonnet evaluation stopped without a result (evaluator panic)".into(),
        }),
    }
}

/// Everything the evaluation thread owns.
struct Job {
    root: RepoRoot,
    app_dir: PathBuf,
    entries: Vec<PathBuf>,
    library_dirs: Vec<PathBuf>,
    options: JsonnetOptions,
    limits: Limits,
}

impl Job {
    fn run(self) -> Result<Evaluated, RenderError> {
        let _depth = jrsonnet_evaluator::stack::limit_stack_depth(self.limits.jsonnet_max_stack);
        let reads = Rc::new(RefCell::new(Vec::new()));
        let resolver = ConfinedImports {
            root: self.root.path().to_path_buf(),
            app_dir: self.app_dir.clone(),
            library_dirs: self.library_dirs.clone(),
            max_file_bytes: self.limits.max_file_bytes,
            reads: Rc::clone(&reads),
        };
        let std = jrsonnet_stdlib::ContextInitializer::new(self.path_resolver());
        {
            let mut settings = std.settings_mut();
            settings.trace_printer = Rc::new(LogTrace);
            for (name, value) in &self.options.ext_vars {
                settings
                    .ext_vars
                    .insert(name.as_str().into(), tla_arg(value));
            }
        }
        // IStr is an interned string: its hash never changes (clippy sees the interner's cells).
        #[allow(clippy::mutable_key_type)]
        let tlas: HashMap<IStr, TlaArg> = self
            .options
            .tlas
            .iter()
            .map(|(name, value)| (name.as_str().into(), tla_arg(value)))
            .collect();
        let mut builder = State::builder();
        builder.import_resolver(resolver).context_initializer(std);
        let state = builder.build();
        let _entered = state.enter();

        let mut objects = Vec::new();
        let mut budget = Budget {
            left: self.limits.max_output_bytes,
            exceeded: false,
        };
        for entry in &self.entries {
            let shown = self.root.display_path(entry);
            let value = state
                .import_resolved(SourcePath::new(jrsonnet_ir::SourceFile::new(entry.clone())))
                .and_then(|value| apply_tla(&tlas, value))
                .and_then(|value| to_json(&value, &mut budget))
                .map_err(|error| {
                    if budget.exceeded {
                        RenderError::ToolOutputTooLarge {
                            tool: EVALUATOR.into(),
                            path: shown.clone(),
                            limit: self.limits.max_output_bytes,
                        }
                    } else {
                        RenderError::Jsonnet {
                            path: shown.clone(),
                            message: self.format_error(&error),
                        }
                    }
                })?;
            let mut index = 0;
            collect(value, &shown, &mut index, &mut objects)?;
            if objects.len() > self.limits.max_documents {
                return Err(RenderError::TooManyDocuments {
                    path: shown,
                    limit: self.limits.max_documents,
                });
            }
        }
        let inputs = reads.borrow().clone();
        Ok(Evaluated { objects, inputs })
    }

    /// Paths in traces and `std.thisFile` are relative to the repository root, never the checkout's
    /// absolute location.
    fn path_resolver(&self) -> PathResolver {
        PathResolver::Relative(self.root.path().to_path_buf())
    }

    fn format_error(&self, error: &JrError) -> String {
        let format = CompactFormat {
            resolver: self.path_resolver(),
            max_trace: 20,
            padding: 4,
        };
        format
            .format(error)
            .unwrap_or_else(|_| error.error().to_string())
    }
}

fn tla_arg(value: &JsonnetValue) -> TlaArg {
    match value {
        JsonnetValue::String(s) => TlaArg::String(s.as_str().into()),
        JsonnetValue::Code(code) => TlaArg::InlineCode(code.clone()),
    }
}

/// `std.trace` goes to the log (debug level), not to the process's stderr.
#[derive(Acyclic)]
struct LogTrace;

impl TracePrinter for LogTrace {
    fn print_trace(&self, _location: CallLocation<'_>, value: IStr) {
        tracing::debug!(message = %value, "std.trace");
    }
}

/// The output budget, charged while the value is converted.
struct Budget {
    left: usize,
    exceeded: bool,
}

impl Budget {
    fn charge(&mut self, bytes: usize) -> jrsonnet_evaluator::Result<()> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => {
                self.exceeded = true;
                Err(ErrorKind::RuntimeError("output over the size limit".into()).into())
            }
        }
    }
}

/// Manifests a value as JSON the way `jsonnet` does (object assertions run, fields in name order,
/// hidden fields left out, integral numbers as integers), charging its size to `budget`.
fn to_json(value: &Val, budget: &mut Budget) -> jrsonnet_evaluator::Result<Value> {
    Ok(match value {
        Val::Null => {
            budget.charge(4)?;
            Value::Null
        }
        Val::Bool(b) => {
            budget.charge(5)?;
            Value::Bool(*b)
        }
        Val::Str(s) => {
            let s = s.clone().into_flat();
            budget.charge(s.len() + 2)?;
            Value::String(s.to_string())
        }
        Val::Num(n) => {
            budget.charge(8)?;
            number(n.get())
        }
        Val::Arr(items) => ensure_sufficient_stack(|| {
            let mut out = Vec::with_capacity(items.len() as usize);
            for (i, item) in items.iter().enumerate() {
                budget.charge(1)?;
                let item = item.with_description(|| format!("elem <{i}> evaluation"))?;
                out.push(in_description_frame(
                    || format!("elem <{i}> manifestification"),
                    || to_json(&item, budget),
                )?);
            }
            Ok::<_, JrError>(Value::Array(out))
        })?,
        Val::Obj(object) => ensure_sufficient_stack(|| {
            object.run_assertions()?;
            let mut out = serde_json::Map::new();
            for (field, item) in object.iter() {
                budget.charge(field.len() + 4)?;
                let item = item.with_description(|| format!("field <{field}> evaluation"))?;
                let item = in_description_frame(
                    || format!("field <{field}> manifestification"),
                    || to_json(&item, budget),
                )?;
                out.insert(field.to_string(), item);
            }
            Ok::<_, JrError>(Value::Object(out))
        })?,
        Val::Func(_) => {
            return Err(ErrorKind::RuntimeError(
                "a function cannot be rendered (top-level arguments missing?)".into(),
            )
            .into());
        }
    })
}

/// `jsonnet` prints integral numbers without a fraction; Kubernetes' typed integer fields accept only
/// that. Beyond 2^63 the float stays a float.
fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 9.0e18 {
        Value::from(value as i64)
    } else {
        serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
    }
}

/// Flattens the entry file's value into objects: arrays (nested too) are flattened, each other value
/// is one output document, numbered in output order.
fn collect(
    value: Value,
    file: &Path,
    index: &mut usize,
    objects: &mut Vec<RenderedObject>,
) -> Result<(), RenderError> {
    if let Value::Array(items) = value {
        for item in items {
            collect(item, file, index, objects)?;
        }
        return Ok(());
    }
    let document = *index;
    *index += 1;
    if let Value::Object(map) = &value
        && !map.contains_key("kind")
        && !map.contains_key("apiVersion")
        && !map.is_empty()
        && map.values().all(Value::is_object)
    {
        return Err(RenderError::InvalidObject {
            path: file.to_path_buf(),
            document,
            message: format!(
                "an object of objects (fields {}) is not a Kubernetes object; return an array, e.g. std.objectValues(...)",
                map.keys().take(3).cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    yaml::push_object(value, file.to_path_buf(), document, objects)
}

/// The import resolver: `import`, `importstr`, `importbin` and the evaluation's entry files. Paths
/// are resolved against the importing file's directory, then the library directories; anything
/// absolute or outside the repository root is refused.
#[derive(Acyclic)]
struct ConfinedImports {
    /// Canonical repository root.
    root: PathBuf,
    /// Base of imports in `--ext-code`/`--tla-code` snippets (`jsonnet` uses its working directory;
    /// the app directory plays that part here).
    app_dir: PathBuf,
    library_dirs: Vec<PathBuf>,
    max_file_bytes: u64,
    reads: Rc<RefCell<Vec<InputRecord>>>,
}

impl ConfinedImports {
    fn shown(&self, path: &Path) -> String {
        path.strip_prefix(&self.root)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    fn relative(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.root).unwrap_or(path).to_path_buf()
    }

    fn refuse(&self, message: String) -> JrError {
        ErrorKind::RuntimeError(message.into()).into()
    }

    /// Where an import is written, as `file:line`. jrsonnet gives a resolver the importing file but
    /// not the import's position, so the line is the first one that holds the import's path.
    fn import_site(&self, from: &SourcePath, reference: &Path) -> String {
        let Some(file) = from.downcast_ref::<jrsonnet_ir::SourceFile>() else {
            return from.to_string();
        };
        let shown = self.shown(file.path());
        let needle = reference.to_string_lossy();
        let line = RepoRoot::from_canonical(self.root.clone())
            .read(file.path(), self.max_file_bytes)
            .ok()
            .and_then(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .lines()
                    .position(|line| line.contains(needle.as_ref()))
            });
        match line {
            Some(index) => format!("{shown}:{}", index + 1),
            None => shown,
        }
    }

    /// `base/reference` if it exists, confined; `None` if nothing is there. Errors lack the import
    /// site, which the caller adds.
    fn candidate(&self, base: &Path, reference: &Path) -> Result<Option<PathBuf>, ImportProblem> {
        let joined = base.join(reference);
        let escapes = || ImportProblem::Escapes {
            reference: reference.to_path_buf(),
        };
        let Some(lexical) = normalize(&joined) else {
            return Err(escapes());
        };
        if !lexical.starts_with(&self.root) {
            return Err(escapes());
        }
        match std::fs::symlink_metadata(&lexical) {
            Err(error) if error.kind() == IoErrorKind::NotFound => {
                self.reads.borrow_mut().push(InputRecord {
                    path: self.relative(&lexical),
                    digest: None,
                });
                return Ok(None);
            }
            Err(source) => {
                return Err(ImportProblem::Io {
                    path: self.relative(&lexical),
                    source,
                });
            }
            Ok(_) => {}
        }
        let canonical = lexical.canonicalize().map_err(|source| ImportProblem::Io {
            path: self.relative(&lexical),
            source,
        })?;
        if !canonical.starts_with(&self.root) {
            return Err(ImportProblem::SymlinkOutside {
                path: self.relative(&lexical),
            });
        }
        if !canonical.is_file() {
            return Err(ImportProblem::NotAFile {
                path: self.relative(&lexical),
            });
        }
        Ok(Some(canonical))
    }
}

/// Why an import candidate cannot be used. Paths are relative to the repository root; the import
/// site is added by the resolver, which hands the message to jrsonnet.
#[derive(Debug, thiserror::Error)]
enum ImportProblem {
    #[error("import {:?} escapes the repository root", reference.display())]
    Escapes { reference: PathBuf },
    #[error("import {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("import {}: a symlink resolves outside the repository root", path.display())]
    SymlinkOutside { path: PathBuf },
    #[error("import {}: not a regular file", path.display())]
    NotAFile { path: PathBuf },
}

impl ImportResolver for ConfinedImports {
    fn resolve_from(
        &self,
        from: &SourcePath,
        path: &dyn AsPathLike,
    ) -> jrsonnet_evaluator::Result<SourcePath> {
        let reference = path.as_path();
        let reference: &Path = reference.as_ref();
        // Reading the importing file for the line happens only on failure.
        let refuse = |message: String| {
            self.refuse(format!("{}: {message}", self.import_site(from, reference)))
        };
        if reference.is_absolute()
            || reference
                .components()
                .any(|c| matches!(c, Component::Prefix(_) | Component::RootDir))
        {
            return Err(refuse(format!(
                "import {:?}: absolute paths are refused; use a path relative to the importing file",
                reference.display()
            )));
        }
        // A file's imports start at its directory; snippets (ext code, TLA code) at the app's.
        let base = from
            .downcast_ref::<jrsonnet_ir::SourceFile>()
            .and_then(|file| file.path().parent())
            .unwrap_or(&self.app_dir)
            .to_path_buf();
        for dir in std::iter::once(&base).chain(&self.library_dirs) {
            if let Some(found) = self
                .candidate(dir, reference)
                .map_err(|problem| refuse(problem.to_string()))?
            {
                return Ok(SourcePath::new(jrsonnet_ir::SourceFile::new(found)));
            }
        }
        Err(refuse(format!(
            "import {:?}: not found next to {} or in the library directories",
            reference.display(),
            self.shown(&base)
        )))
    }

    fn load_file_contents(&self, resolved: &SourcePath) -> jrsonnet_evaluator::Result<Vec<u8>> {
        if let Some(snippet) = resolved.downcast_ref::<jrsonnet_ir::SourceFifo>() {
            return Ok(snippet.1.to_vec());
        }
        let Some(file) = resolved.downcast_ref::<jrsonnet_ir::SourceFile>() else {
            return Err(self.refuse(format!("cannot load {resolved}")));
        };
        // Only paths this resolver confined (or the confined entry files) arrive here.
        if !file.path().starts_with(&self.root) {
            return Err(self.refuse(format!(
                "{} is outside the repository root",
                file.path().display()
            )));
        }
        let root = RepoRoot::from_canonical(self.root.clone());
        let bytes = root
            .read(file.path(), self.max_file_bytes)
            .map_err(|error| self.refuse(error.to_string()))?;
        self.reads.borrow_mut().push(InputRecord {
            path: self.relative(file.path()),
            digest: Some(Sha256::digest(&bytes).to_vec()),
        });
        Ok(bytes)
    }
}

/// Whether the inputs recorded by an earlier evaluation are still what they were.
/// Whether the inputs recorded by an earlier evaluation (maybe of another checkout of the same
/// repository) are still what they were under `root`: same content, still absent, still confined.
pub fn inputs_unchanged(root: &RepoRoot, inputs: &[InputRecord], limit: u64) -> bool {
    inputs.iter().all(|input| {
        let path = root.path().join(&input.path);
        match &input.digest {
            None => std::fs::symlink_metadata(&path).is_err(),
            Some(digest) => root
                .confine(&path, &input.path)
                .and_then(|canonical| root.read(&canonical, limit))
                .is_ok_and(|bytes| Sha256::digest(&bytes).as_slice() == digest.as_slice()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_resolves_dots_lexically() {
        assert_eq!(
            normalize(Path::new("/repo/app/../lib/./a.libsonnet")),
            Some(PathBuf::from("/repo/lib/a.libsonnet"))
        );
        assert_eq!(normalize(Path::new("/repo/../..")), None);
    }

    #[test]
    fn integral_numbers_are_integers() {
        assert_eq!(number(3.0), Value::from(3));
        assert_eq!(number(-1e3), Value::from(-1000));
        assert_eq!(number(0.5), serde_json::json!(0.5));
        assert!(number(1e20).is_f64());
    }

    fn collected(value: Value) -> Result<Vec<(usize, Value)>, RenderError> {
        let mut objects = Vec::new();
        collect(value, Path::new("app/main.jsonnet"), &mut 0, &mut objects)?;
        Ok(objects
            .into_iter()
            .map(|o| (o.provenance.document, o.object))
            .collect())
    }

    fn config_map(name: &str) -> Value {
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
    }

    #[test]
    fn nested_arrays_and_lists_are_flattened_in_output_order() {
        let value = serde_json::json!([
            config_map("a"),
            [config_map("b"), [config_map("c")]],
            null,
            {"apiVersion": "v1", "kind": "List", "items": [config_map("d"), config_map("e")]},
        ]);
        let objects = collected(value).expect("valid");
        let summary: Vec<(usize, &str)> = objects
            .iter()
            .map(|(doc, o)| (*doc, o["metadata"]["name"].as_str().unwrap_or_default()))
            .collect();
        assert_eq!(
            summary,
            vec![(0, "a"), (1, "b"), (2, "c"), (4, "d"), (4, "e")]
        );
    }

    #[test]
    fn an_object_of_objects_is_refused_with_a_hint() {
        let value = serde_json::json!({"a": config_map("a"), "b": config_map("b")});
        let error = collected(value).expect_err("object of objects");
        assert!(error.to_string().contains("std.objectValues"), "{error}");
    }

    #[test]
    fn a_scalar_names_file_and_index() {
        let error = collected(serde_json::json!([config_map("a"), "oops"])).expect_err("scalar");
        let message = error.to_string();
        assert!(
            message.contains("app/main.jsonnet document 1") && message.contains("a string"),
            "{message}"
        );
    }
}
