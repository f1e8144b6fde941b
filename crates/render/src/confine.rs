//! Confinement of every file access to the repository root. Paths are resolved (symlinks and `..`)
//! before they are compared with the root, so a symlink or a `../..` cannot reach outside — the
//! classes behind Argo CD's CVE-2022-24348 (values-file traversal) and CVE-2022-24731 (symlink
//! escape). Reads are bounded by the file-size limit.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::RenderError;

/// The canonical repository root that every read must stay under.
#[derive(Debug, Clone)]
pub struct RepoRoot {
    canonical: PathBuf,
}

impl RepoRoot {
    pub fn new(root: &Path) -> Result<Self, RenderError> {
        let canonical = root.canonicalize().map_err(|source| RenderError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Self { canonical })
    }

    /// A root that is already canonical (as [`RepoRoot::path`] returned it).
    pub fn from_canonical(canonical: PathBuf) -> Self {
        Self { canonical }
    }

    pub fn path(&self) -> &Path {
        &self.canonical
    }

    /// Resolves `reference`, written in a file or an option relative to `base` (an already confined
    /// absolute directory), to a canonical path inside the root. `shown` names the referencing file
    /// in errors.
    pub fn resolve(
        &self,
        base: &Path,
        reference: &str,
        shown: &Path,
    ) -> Result<PathBuf, RenderError> {
        let reference_path = Path::new(reference);
        if reference_path.is_absolute()
            || reference_path
                .components()
                .any(|c| matches!(c, Component::Prefix(_)))
        {
            return Err(RenderError::AbsolutePath {
                path: PathBuf::from(reference),
            });
        }
        self.confine(&base.join(reference_path), shown)
    }

    /// The app's directory, `app_path` relative to the root (as an app spec, a Git source's `path` or
    /// [`local_app`] names it), resolved with its symlinks and `..` and refused when it is absolute or
    /// leaves the root. The one check every app directory passes, from a Git checkout or a local
    /// repository alike.
    pub fn app_dir(&self, app_path: &Path) -> Result<PathBuf, RenderError> {
        if app_path.is_absolute()
            || app_path
                .components()
                .any(|c| matches!(c, Component::Prefix(_)))
        {
            return Err(RenderError::AbsolutePath {
                path: app_path.to_path_buf(),
            });
        }
        let canonical = self
            .canonical
            .join(app_path)
            .canonicalize()
            .map_err(|source| RenderError::Io {
                path: app_path.to_path_buf(),
                source,
            })?;
        if !canonical.starts_with(&self.canonical) {
            return Err(RenderError::AppOutsideRoot {
                path: app_path.to_path_buf(),
                root: self.canonical.clone(),
            });
        }
        Ok(canonical)
    }

    /// Canonicalises an absolute path and checks that it stays inside the root.
    pub fn confine(&self, path: &Path, shown: &Path) -> Result<PathBuf, RenderError> {
        let canonical = path.canonicalize().map_err(|source| RenderError::Io {
            path: self.display_path(path),
            source,
        })?;
        if !canonical.starts_with(&self.canonical) {
            return Err(RenderError::PathEscape {
                path: self.display_path(path),
                reason: format!(
                    "referenced from {} and resolves outside the root",
                    shown.display()
                ),
            });
        }
        Ok(canonical)
    }

    /// The path as shown to users: relative to the root when it is inside.
    pub fn display_path(&self, path: &Path) -> PathBuf {
        path.strip_prefix(&self.canonical)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| path.to_path_buf())
    }

    /// Reads a confined file, refusing it when it is larger than `limit` bytes.
    pub fn read(&self, canonical: &Path, limit: u64) -> Result<Vec<u8>, RenderError> {
        let shown = self.display_path(canonical);
        let io = |source| RenderError::Io {
            path: shown.clone(),
            source,
        };
        let file = std::fs::File::open(canonical).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        if size > limit {
            return Err(RenderError::FileTooLarge {
                path: shown,
                size,
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        // `take` guards against a file that grows between the size check and the read.
        file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 > limit {
            return Err(RenderError::FileTooLarge {
                path: shown,
                size: bytes.len() as u64,
                limit,
            });
        }
        Ok(bytes)
    }
}

/// A local app directory (`capstan render DIR`, `capstan sync DIR`, an app file's `source.path`): the
/// repository it belongs to and its path in it, for [`RepoRoot::app_dir`] to resolve and confine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalApp {
    /// The repository root, absolute, symlinks in it not resolved.
    pub root: PathBuf,
    /// The app directory relative to `root` (`.` for the root itself).
    pub path: PathBuf,
}

/// Finds the repository root of the local app directory `dir` without following `dir`'s symlinks:
/// the root is searched from `anchor` (the directory itself, or the app file's directory), written
/// as an absolute path with `.` and `..` removed lexically, and is the nearest ancestor holding
/// `.git` — where a directory reached through a symlink inside a repository never counts, so a link
/// in a repository cannot make another directory (or another repository) the root. Without a
/// repository, the root is `anchor` itself. `dir` must lie lexically under the root; whether it
/// resolves inside is [`RepoRoot::app_dir`]'s check, the same one a Git checkout's `path` passes.
pub fn local_app(dir: &Path, anchor: &Path) -> Result<LocalApp, RenderError> {
    let cwd = std::env::current_dir().map_err(|source| RenderError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let above_root = |path: &Path| RenderError::AppOutsideRoot {
        path: path.to_path_buf(),
        root: PathBuf::from("/"),
    };
    let dir_absolute = normalize(&cwd.join(dir)).ok_or_else(|| above_root(dir))?;
    let anchor_absolute = normalize(&cwd.join(anchor)).ok_or_else(|| above_root(anchor))?;
    let root = repository_root(&anchor_absolute).unwrap_or(anchor_absolute);
    let Ok(path) = dir_absolute.strip_prefix(&root) else {
        return Err(RenderError::AppOutsideRoot {
            path: dir.to_path_buf(),
            root,
        });
    };
    let path = if path.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        path.to_path_buf()
    };
    Ok(LocalApp { root, path })
}

/// Resolves `.` and `..` without touching the file system; `None` if `..` climbs above `/`.
pub(crate) fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() || out.as_os_str().is_empty() {
                    return None;
                }
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// The nearest ancestor of `start` (absolute, lexically clean) holding `.git`, walking down from `/`:
/// once inside a repository, a symlinked component ends the walk, so what lies behind it (another
/// repository included) is content of the repository found so far.
fn repository_root(start: &Path) -> Option<PathBuf> {
    let mut root = None;
    let mut current = PathBuf::new();
    for component in start.components() {
        current.push(component);
        let Ok(metadata) = std::fs::symlink_metadata(&current) else {
            break;
        };
        if root.is_some() && metadata.file_type().is_symlink() {
            break;
        }
        if std::fs::symlink_metadata(current.join(".git")).is_ok() {
            root = Some(current.clone());
        }
    }
    root
}

/// Every regular file under `dir`, sorted, with symlinks resolved and confined. Symlinked
/// directories are followed once (a loop is cut by remembering visited canonical directories).
pub fn walk_files(root: &RepoRoot, dir: &Path) -> Result<Vec<PathBuf>, RenderError> {
    let mut files = Vec::new();
    let mut visited = std::collections::BTreeSet::new();
    walk_into(root, dir, &mut files, &mut visited)?;
    Ok(files)
}

fn walk_into(
    root: &RepoRoot,
    dir: &Path,
    files: &mut Vec<PathBuf>,
    visited: &mut std::collections::BTreeSet<PathBuf>,
) -> Result<(), RenderError> {
    let canonical_dir = root.confine(dir, dir)?;
    if !visited.insert(canonical_dir) {
        return Ok(());
    }
    let io = |source| RenderError::Io {
        path: root.display_path(dir),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for entry in entries {
        // `.git` holds no manifests and is large; everything else is input.
        if entry.file_name().is_some_and(|n| n == ".git") {
            continue;
        }
        let resolved = root.confine(&entry, &entry)?;
        if resolved.is_dir() {
            walk_into(root, &entry, files, visited)?;
        } else if resolved.is_file() {
            files.push(entry);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_and_absolute_references_are_refused() {
        let repo = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(repo.path().join("app")).expect("mkdir");
        std::fs::write(repo.path().join("app/values.yaml"), "a: 1").expect("write");
        let root = RepoRoot::new(repo.path()).expect("root");
        let app = root.path().join("app");
        assert!(root.resolve(&app, "values.yaml", Path::new("x")).is_ok());
        assert!(
            root.resolve(&app, "../app/values.yaml", Path::new("x"))
                .is_ok()
        );
        assert!(matches!(
            root.resolve(&app, "../../etc/passwd", Path::new("x")),
            Err(RenderError::PathEscape { .. }) | Err(RenderError::Io { .. })
        ));
        assert!(matches!(
            root.resolve(&app, "/etc/passwd", Path::new("x")),
            Err(RenderError::AbsolutePath { .. })
        ));
    }

    #[test]
    fn a_local_root_is_found_from_the_path_as_written() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().canonicalize().expect("canonical tempdir");
        let repo = base.join("work/repo");
        std::fs::create_dir_all(repo.join(".git")).expect("mkdir .git");
        std::fs::create_dir_all(repo.join("apps/shop")).expect("mkdir app");
        let other = base.join("other");
        std::fs::create_dir_all(other.join(".git")).expect("mkdir other/.git");
        std::os::unix::fs::symlink(&other, repo.join("link")).expect("symlink");
        // A symlinked directory above the repository is the user's own: the root is still found.
        std::os::unix::fs::symlink(base.join("work"), base.join("work-link")).expect("symlink");

        let found = local_app(&repo.join("apps/shop"), &repo.join("apps/shop")).expect("app");
        assert_eq!(found.root, repo);
        assert_eq!(found.path, Path::new("apps/shop"));
        let found = local_app(&repo.join("apps/../apps/./shop"), &repo.join("apps/shop"))
            .expect("lexical dots");
        assert_eq!(found.path, Path::new("apps/shop"));
        let found = local_app(&repo, &repo).expect("the root itself");
        assert_eq!(found.path, Path::new("."));
        let found = local_app(
            &base.join("work-link/repo/apps/shop"),
            &base.join("work-link/repo/apps/shop"),
        )
        .expect("through a link above the repository");
        assert_eq!(found.root, base.join("work-link/repo"));
        assert_eq!(found.path, Path::new("apps/shop"));

        // A link inside the repository to another repository is content, not a root.
        let found = local_app(&repo.join("link"), &repo.join("link")).expect("link");
        assert_eq!(
            (found.root.as_path(), found.path.as_path()),
            (repo.as_path(), Path::new("link"))
        );
        let root = RepoRoot::new(&found.root).expect("root");
        assert!(matches!(
            root.app_dir(&found.path),
            Err(RenderError::AppOutsideRoot { path, root }) if path == Path::new("link") && root == repo
        ));

        // An app file's `path` is found from the file's directory and must stay under its root.
        let error = local_app(&repo.join("../outside"), &repo).expect_err("lexically outside");
        assert!(
            matches!(&error, RenderError::AppOutsideRoot { root, .. } if *root == repo),
            "{error}"
        );
        // Without a repository, the app file's directory is the root.
        let loose = base.join("loose");
        std::fs::create_dir_all(loose.join("app")).expect("mkdir loose");
        let found = local_app(&loose.join("app"), &loose).expect("loose app");
        assert_eq!(
            (found.root, found.path),
            (loose.clone(), PathBuf::from("app"))
        );
        assert!(local_app(&loose.join("../work"), &loose).is_err());
    }

    #[test]
    fn reads_over_the_size_limit_are_refused() {
        let repo = tempfile::tempdir().expect("tempdir");
        std::fs::write(repo.path().join("big.yaml"), vec![b'a'; 100]).expect("write");
        let root = RepoRoot::new(repo.path()).expect("root");
        let file = root.path().join("big.yaml");
        assert_eq!(root.read(&file, 100).expect("at the limit").len(), 100);
        assert!(matches!(
            root.read(&file, 99),
            Err(RenderError::FileTooLarge { size: 100, .. })
        ));
    }
}
