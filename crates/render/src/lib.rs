//! Capstan's render stage: turns an app directory of a fetched revision into the exact, ordered set
//! of Kubernetes objects to apply, each with its provenance — or one precise error, in which case
//! nothing is rendered. Deterministic and offline; every file read is confined to the repository.
//!
//! Module map:
//! - [`confine`]: resolving paths (symlinks, `..`, absolute paths refused) under the repository root, bounded reads.
//! - [`yaml`]: Kubernetes-flavoured (YAML 1.1) reading, limits, `kind: List` flattening.
//! - [`plain`]: the plain-directory renderer (walk, globs).
//! - [`kustomize`]: the kustomize renderer and the kustomization input graph.
//! - [`helm`]: the `helm template` renderer, provenance from `# Source:`, hook → sync-hook mapping.
//! - [`jsonnet`]: the in-process Jsonnet renderer (jrsonnet), its confined import resolver and output rules.
//! - [`process`]: spawning tools with a scrubbed environment, timeout and output cap; spawn counting.
//! - this file: detection, options, limits, tool discovery, the render cache and the output stream.

pub mod confine;
mod error;
pub mod helm;
pub mod jsonnet;
pub mod kustomize;
pub mod plain;
pub mod process;
pub mod yaml;

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

pub use confine::{LocalApp, RepoRoot, local_app};
pub use error::RenderError;
pub use jsonnet::{JsonnetOptions, JsonnetValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RendererKind {
    Plain,
    Kustomize,
    Helm,
    Jsonnet,
}

/// A renderer name that [`RendererKind`]'s `FromStr` does not know; holds the name as given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown renderer {0:?} (plain, kustomize, helm, jsonnet)")]
pub struct UnknownRenderer(pub String);

impl std::str::FromStr for RendererKind {
    type Err = UnknownRenderer;
    fn from_str(s: &str) -> Result<Self, UnknownRenderer> {
        match s {
            "plain" | "directory" => Ok(Self::Plain),
            "kustomize" => Ok(Self::Kustomize),
            "helm" => Ok(Self::Helm),
            "jsonnet" => Ok(Self::Jsonnet),
            other => Err(UnknownRenderer(other.to_owned())),
        }
    }
}

/// Per-app renderer options. They are part of the cache key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Overrides detection.
    pub renderer: Option<RendererKind>,
    /// Plain: globs over paths relative to the app directory; empty means everything.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub helm: HelmOptions,
    pub jsonnet: JsonnetOptions,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HelmOptions {
    /// Defaults to the app directory's name.
    pub release_name: Option<String>,
    pub namespace: Option<String>,
    /// Relative to the app (chart) directory; must stay inside the repository.
    pub values_files: Vec<String>,
    /// Inline values (YAML), applied after the files.
    pub values: Option<String>,
    /// From the destination cluster, e.g. `v1.34.4`.
    pub kube_version: Option<String>,
    pub api_versions: Vec<String>,
}

/// Bounds on what a render may consume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_documents: usize,
    pub max_yaml_aliases: usize,
    pub max_alias_replayed_events: usize,
    pub process_timeout: Duration,
    /// Output of a tool, and the size of a Jsonnet value as JSON.
    pub max_output_bytes: usize,
    /// Jsonnet call depth (`jsonnet --max-stack`).
    pub jsonnet_max_stack: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 16 * 1024 * 1024,
            max_documents: 50_000,
            max_yaml_aliases: 10_000,
            max_alias_replayed_events: 1_000_000,
            process_timeout: Duration::from_secs(120),
            max_output_bytes: 256 * 1024 * 1024,
            jsonnet_max_stack: 500,
        }
    }
}

/// Where an object came from: a file relative to the repository root and the document's index in
/// it (0-based, counting documents with content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub file: PathBuf,
    pub document: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RenderedObject {
    pub object: Value,
    pub provenance: Provenance,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub renderer: RendererKind,
    /// The tool that rendered, e.g. `kustomize v5.7.1`, `helm v4.1.4+g...` or `jrsonnet 0.5.0-pre98`;
    /// `None` for plain.
    pub tool_version: Option<String>,
    pub objects: Vec<RenderedObject>,
}

/// The external binaries. `None` means "not found"; rendering with it then fails clearly.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    pub helm: Option<PathBuf>,
    pub kustomize: Option<PathBuf>,
    /// Fallback for kustomize (`kubectl kustomize`).
    pub kubectl: Option<PathBuf>,
}

impl Tools {
    /// `CAPSTAN_HELM`, `CAPSTAN_KUSTOMIZE`, `CAPSTAN_KUBECTL`, else the first match on `PATH`.
    pub fn from_env() -> Self {
        let find = |var: &str, name: &str| {
            std::env::var_os(var).map(PathBuf::from).or_else(|| {
                std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                    .map(|dir| dir.join(name))
                    .find(|candidate| candidate.is_file())
            })
        };
        Self {
            helm: find("CAPSTAN_HELM", "helm"),
            kustomize: find("CAPSTAN_KUSTOMIZE", "kustomize"),
            kubectl: find("CAPSTAN_KUBECTL", "kubectl"),
        }
    }
}

/// Renders apps; holds the tools, the limits, the render cache and the spawn counter.
pub struct RenderEngine {
    tools: Tools,
    limits: Limits,
    spawns: AtomicUsize,
    jsonnet_runs: AtomicUsize,
    versions: Mutex<HashMap<PathBuf, String>>,
    cache: Mutex<HashMap<[u8; 32], Arc<Rendered>>>,
    /// Jsonnet renders by (options, evaluator, app, entry files); each with the inputs it read.
    jsonnet_cache: Mutex<HashMap<[u8; 32], Vec<JsonnetCached>>>,
}

/// A Jsonnet render and the inputs its evaluation looked at: valid while they are unchanged.
struct JsonnetCached {
    inputs: Vec<jsonnet::InputRecord>,
    rendered: Arc<Rendered>,
}

/// Kept per app and options: enough for a revert to hit, bounded for an app that changes often.
const JSONNET_CACHE_VERSIONS: usize = 4;

/// Which renderer an app directory asks for.
pub fn detect(app_dir: &Path) -> RendererKind {
    if kustomize::kustomization_file(app_dir).is_some() {
        RendererKind::Kustomize
    } else if app_dir.join("Chart.yaml").is_file() {
        RendererKind::Helm
    } else {
        RendererKind::Plain
    }
}

impl RenderEngine {
    pub fn new(tools: Tools, limits: Limits) -> Self {
        Self {
            tools,
            limits,
            spawns: AtomicUsize::new(0),
            jsonnet_runs: AtomicUsize::new(0),
            versions: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            jsonnet_cache: Mutex::new(HashMap::new()),
        }
    }

    /// How many external processes this engine has started (renders and version probes).
    pub fn spawn_count(&self) -> usize {
        self.spawns.load(Ordering::SeqCst)
    }

    /// Renders `app_path` (relative to `root`). Kustomize, Helm and Jsonnet renders are cached by the
    /// hash of the options, the tool version and the content of every input file.
    pub fn render(
        &self,
        root: &Path,
        app_path: &Path,
        options: &RenderOptions,
    ) -> Result<Arc<Rendered>, RenderError> {
        let root = RepoRoot::new(root)?;
        let app_dir = root.app_dir(app_path)?;
        let shown_app = root.display_path(&app_dir);
        let renderer = options.renderer.unwrap_or_else(|| detect(&app_dir));
        let _span = tracing::info_span!("render", app = %shown_app.display(), ?renderer).entered();
        let rendered = match renderer {
            RendererKind::Plain => Arc::new(Rendered {
                renderer,
                tool_version: None,
                objects: plain::render(&root, &app_dir, options, &self.limits)?,
            }),
            RendererKind::Kustomize => self.render_kustomize(&root, &app_dir, options)?,
            RendererKind::Helm => self.render_helm(&root, &app_dir, options)?,
            RendererKind::Jsonnet => self.render_jsonnet(&root, &app_dir, options)?,
        };
        check_unique(&rendered.objects)?;
        Ok(rendered)
    }

    fn tool_version(
        &self,
        tool: &Path,
        args: &[&str],
        shown: &Path,
    ) -> Result<String, RenderError> {
        if let Some(version) = self.lock_versions().get(tool) {
            return Ok(version.clone());
        }
        let output = process::run(
            process::ToolRun {
                tool,
                args: args.iter().map(OsString::from).collect(),
                cwd: Path::new("/"),
                shown,
                env: Vec::new(),
            },
            &self.limits,
            &self.spawns,
        )?;
        let name = tool
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let version = format!("{name} {}", String::from_utf8_lossy(&output).trim());
        self.lock_versions()
            .insert(tool.to_path_buf(), version.clone());
        Ok(version)
    }

    fn lock_versions(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, String>> {
        // A poisoned map only means another render panicked mid-insert; its contents are still valid.
        self.versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Arc<Rendered>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    fn store(&self, key: [u8; 32], rendered: Rendered) -> Arc<Rendered> {
        let rendered = Arc::new(rendered);
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, Arc::clone(&rendered));
        rendered
    }

    fn render_kustomize(
        &self,
        root: &RepoRoot,
        app_dir: &Path,
        options: &RenderOptions,
    ) -> Result<Arc<Rendered>, RenderError> {
        let shown_app = root.display_path(app_dir);
        let (tool, mut args): (&PathBuf, Vec<OsString>) =
            match (&self.tools.kustomize, &self.tools.kubectl) {
                (Some(kustomize), _) => (kustomize, vec!["build".into()]),
                (None, Some(kubectl)) => (kubectl, vec!["kustomize".into()]),
                (None, None) => {
                    return Err(RenderError::ToolMissing {
                        tool: "kustomize",
                        tried: "CAPSTAN_KUSTOMIZE, CAPSTAN_KUBECTL, PATH".into(),
                        env_var: "CAPSTAN_KUSTOMIZE",
                    });
                }
            };
        let version_args: &[&str] = if self.tools.kustomize.is_some() {
            &["version"]
        } else {
            &["version", "--client"]
        };
        let version = self.tool_version(tool, version_args, &shown_app)?;
        let mut inputs = BTreeSet::new();
        kustomize::collect_inputs(root, app_dir, &self.limits, &mut inputs, &mut Vec::new())?;
        let key = self.cache_key(root, options, &version, &shown_app, &inputs, &[])?;
        if let Some(hit) = self.cached(&key) {
            tracing::debug!("render cache hit");
            return Ok(hit);
        }
        args.extend([
            "--load-restrictor".into(),
            "LoadRestrictionsRootOnly".into(),
        ]);
        args.push(app_dir.as_os_str().to_owned());
        let output = process::run(
            process::ToolRun {
                tool,
                args,
                cwd: root.path(),
                shown: &shown_app,
                env: Vec::new(),
            },
            &self.limits,
            &self.spawns,
        )?;
        let kustomization = kustomize::kustomization_file(app_dir)
            .map(|f| root.display_path(&f))
            .unwrap_or_else(|| shown_app.clone());
        let objects = kustomize::parse_output(&output, &kustomization, &self.limits)?;
        Ok(self.store(
            key,
            Rendered {
                renderer: RendererKind::Kustomize,
                tool_version: Some(version),
                objects,
            },
        ))
    }

    fn render_helm(
        &self,
        root: &RepoRoot,
        app_dir: &Path,
        options: &RenderOptions,
    ) -> Result<Arc<Rendered>, RenderError> {
        let shown_app = root.display_path(app_dir);
        let Some(helm) = &self.tools.helm else {
            return Err(RenderError::ToolMissing {
                tool: "helm",
                tried: "CAPSTAN_HELM, PATH".into(),
                env_var: "CAPSTAN_HELM",
            });
        };
        let version = self.tool_version(helm, &["version", "--short"], &shown_app)?;
        let mut inputs: BTreeSet<PathBuf> = BTreeSet::new();
        for file in confine::walk_files(root, app_dir)? {
            inputs.insert(root.confine(&file, &shown_app)?);
        }
        let mut values_files = Vec::new();
        for values_file in &options.helm.values_files {
            if values_file.contains("://") {
                return Err(RenderError::Options {
                    path: shown_app.clone(),
                    message: format!(
                        "values file {values_file:?} is remote; only files in the repository are read"
                    ),
                });
            }
            let resolved = root.resolve(app_dir, values_file, &shown_app)?;
            inputs.insert(resolved.clone());
            values_files.push(resolved);
        }
        let inline = options.helm.values.clone().unwrap_or_default();
        let key = self.cache_key(
            root,
            options,
            &version,
            &shown_app,
            &inputs,
            inline.as_bytes(),
        )?;
        if let Some(hit) = self.cached(&key) {
            tracing::debug!("render cache hit");
            return Ok(hit);
        }
        let release = options.helm.release_name.clone().unwrap_or_else(|| {
            app_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "release".into())
        });
        let mut args: Vec<OsString> = vec![
            "template".into(),
            release.into(),
            app_dir.as_os_str().to_owned(),
        ];
        args.push("--include-crds".into());
        if let Some(namespace) = &options.helm.namespace {
            args.extend(["--namespace".into(), namespace.into()]);
        }
        for file in &values_files {
            args.extend(["--values".into(), file.as_os_str().to_owned()]);
        }
        // The inline values live in a private temporary file outside the repository.
        let inline_file = tempfile::NamedTempFile::new().map_err(|source| RenderError::Io {
            path: PathBuf::from("<inline values>"),
            source,
        })?;
        if options.helm.values.is_some() {
            std::fs::write(inline_file.path(), inline.as_bytes()).map_err(|source| {
                RenderError::Io {
                    path: PathBuf::from("<inline values>"),
                    source,
                }
            })?;
            args.extend(["--values".into(), inline_file.path().as_os_str().to_owned()]);
        }
        if let Some(kube_version) = &options.helm.kube_version {
            args.extend(["--kube-version".into(), kube_version.into()]);
        }
        for api_version in &options.helm.api_versions {
            args.extend(["--api-versions".into(), api_version.into()]);
        }
        let output = process::run(
            process::ToolRun {
                tool: helm,
                args,
                cwd: root.path(),
                shown: &shown_app,
                env: Vec::new(),
            },
            &self.limits,
            &self.spawns,
        )?;
        let objects = helm::parse_output(&output, &shown_app, &self.limits)?;
        Ok(self.store(
            key,
            Rendered {
                renderer: RendererKind::Helm,
                tool_version: Some(version),
                objects,
            },
        ))
    }

    /// Jsonnet evaluates in-process, so its input set is known only after an evaluation: the cache
    /// holds, per (options, evaluator, app, entry files), the renders with the files each read (and
    /// the import candidates it found absent); one whose inputs are all unchanged is reused.
    fn render_jsonnet(
        &self,
        root: &RepoRoot,
        app_dir: &Path,
        options: &RenderOptions,
    ) -> Result<Arc<Rendered>, RenderError> {
        let entries = jsonnet::entry_files(root, app_dir, &options.jsonnet)?;
        let library_dirs = jsonnet::library_dirs(root, app_dir, &options.jsonnet)?;
        let shown_app = root.display_path(app_dir);
        let mut hasher = Sha256::new();
        for field in [
            format!("{options:?}"),
            format!("{:?}", self.limits),
            jsonnet::EVALUATOR.to_owned(),
            shown_app.display().to_string(),
            // Relative: the same commit content in another checkout directory is the same render.
            format!("{:?}", relative(root, &entries)),
            format!("{:?}", relative(root, &library_dirs)),
        ] {
            hasher.update((field.len() as u64).to_le_bytes());
            hasher.update(field.as_bytes());
        }
        let key: [u8; 32] = hasher.finalize().into();
        let candidates: Vec<(Vec<jsonnet::InputRecord>, Arc<Rendered>)> = self
            .lock_jsonnet_cache()
            .get(&key)
            .map(|versions| {
                versions
                    .iter()
                    .map(|v| (v.inputs.clone(), Arc::clone(&v.rendered)))
                    .collect()
            })
            .unwrap_or_default();
        // Checked outside the lock: it reads files.
        for (inputs, rendered) in candidates {
            if jsonnet::inputs_unchanged(root, &inputs, self.limits.max_file_bytes) {
                tracing::debug!("render cache hit");
                return Ok(rendered);
            }
        }
        self.jsonnet_runs.fetch_add(1, Ordering::SeqCst);
        let evaluated = jsonnet::evaluate(
            root,
            app_dir,
            entries,
            library_dirs,
            &options.jsonnet,
            &self.limits,
        )?;
        let rendered = Arc::new(Rendered {
            renderer: RendererKind::Jsonnet,
            tool_version: Some(jsonnet::EVALUATOR.to_owned()),
            objects: evaluated.objects,
        });
        let mut cache = self.lock_jsonnet_cache();
        let versions = cache.entry(key).or_default();
        if versions.len() >= JSONNET_CACHE_VERSIONS {
            versions.remove(0);
        }
        versions.push(JsonnetCached {
            inputs: evaluated.inputs,
            rendered: Arc::clone(&rendered),
        });
        Ok(rendered)
    }

    fn lock_jsonnet_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Vec<JsonnetCached>>> {
        self.jsonnet_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many Jsonnet evaluations this engine has run (cache hits excluded).
    pub fn jsonnet_evaluations(&self) -> usize {
        self.jsonnet_runs.load(Ordering::SeqCst)
    }

    fn cache_key(
        &self,
        root: &RepoRoot,
        options: &RenderOptions,
        version: &str,
        app: &Path,
        inputs: &BTreeSet<PathBuf>,
        extra: &[u8],
    ) -> Result<[u8; 32], RenderError> {
        let mut hasher = Sha256::new();
        // Length-prefixed fields keep distinct inputs from hashing alike.
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(format!("{options:?}").as_bytes());
        field(format!("{:?}", self.limits).as_bytes());
        field(version.as_bytes());
        field(app.as_os_str().as_encoded_bytes());
        field(extra);
        for input in inputs {
            field(root.display_path(input).as_os_str().as_encoded_bytes());
            field(&root.read(input, self.limits.max_file_bytes)?);
        }
        Ok(hasher.finalize().into())
    }
}

fn relative(root: &RepoRoot, paths: &[PathBuf]) -> Vec<PathBuf> {
    paths.iter().map(|p| root.display_path(p)).collect()
}

/// The object's identity: group, kind, namespace, name.
pub fn object_key(object: &Value) -> String {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = object
        .pointer("/metadata/name")
        .or_else(|| object.pointer("/metadata/generateName"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    format!("{group}/{kind} {namespace}/{name}")
}

/// The output is a set: two objects with the same identity would make "apply" ambiguous.
fn check_unique(objects: &[RenderedObject]) -> Result<(), RenderError> {
    let mut seen: HashMap<String, &Provenance> = HashMap::new();
    for object in objects {
        if object.object.pointer("/metadata/name").is_none() {
            continue; // generateName objects are distinct by construction
        }
        let key = object_key(&object.object);
        if let Some(first) = seen.insert(key.clone(), &object.provenance) {
            return Err(RenderError::DuplicateObject {
                object: key,
                first_path: first.file.clone(),
                first_document: first.document,
                path: object.provenance.file.clone(),
                document: object.provenance.document,
            });
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Yaml,
    Json,
}

/// The objects as a YAML stream (each preceded by a `# Source:` comment) or a JSON `List`.
pub fn format_objects(rendered: &Rendered, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => {
            let list = serde_json::json!({
                "apiVersion": "v1",
                "kind": "List",
                "items": rendered.objects.iter().map(|o| o.object.clone()).collect::<Vec<_>>(),
            });
            let mut text = serde_json::to_string_pretty(&list).unwrap_or_default();
            text.push('\n');
            text
        }
        OutputFormat::Yaml => {
            let mut text = String::new();
            for object in &rendered.objects {
                text.push_str(&format!(
                    "---\n# Source: {} (document {})\n",
                    object.provenance.file.display(),
                    object.provenance.document
                ));
                text.push_str(&serde_saphyr::to_string(&object.object).unwrap_or_default());
            }
            text
        }
    }
}

/// `capstan render PATH`: the repository root is found from PATH as written ([`confine::local_app`]:
/// the nearest ancestor holding `.git`, else PATH itself), and PATH must resolve inside it; tools come
/// from [`Tools::from_env`].
pub fn render_command(
    path: &Path,
    options: &RenderOptions,
    format: OutputFormat,
) -> Result<String, RenderError> {
    let confine::LocalApp { root, path: app } = confine::local_app(path, path)?;
    let engine = RenderEngine::new(Tools::from_env(), Limits::default());
    let rendered = engine.render(&root, &app, options)?;
    Ok(format_objects(&rendered, format))
}

#[cfg(test)]
mod tests {
    use super::{RendererKind, UnknownRenderer};

    #[test]
    fn renderer_names_parse_and_an_unknown_one_is_named_with_the_choices() {
        assert_eq!("directory".parse(), Ok(RendererKind::Plain));
        assert_eq!("jsonnet".parse(), Ok(RendererKind::Jsonnet));
        let err = "helmfile".parse::<RendererKind>().expect_err("unknown");
        assert_eq!(err, UnknownRenderer("helmfile".into()));
        assert_eq!(
            err.to_string(),
            "unknown renderer \"helmfile\" (plain, kustomize, helm, jsonnet)"
        );
    }
}
