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
