//! Per-commit checkouts: `<root>/<commit>/tree` holds the files, written read-only straight from
//! the commit's tree objects so every app sharing the commit sees the same bytes; `<root>/<commit>/digest` holds the content
//! digest; `<root>/<commit>/last-used` drives LRU garbage collection. A checkout is written under a
//! temporary name and renamed into place, so readers never see a half-written tree.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use sha2::{Digest, Sha256};

use crate::error::SourceError;

const TREE_DIR: &str = "tree";
const DIGEST_FILE: &str = "digest";
const LAST_USED_FILE: &str = "last-used";

/// A ready checkout.
#[derive(Clone, Debug)]
pub struct Checkout {
    pub path: PathBuf,
    pub digest: String,
    /// False when an existing checkout was reused.
    pub created: bool,
}

/// Returns the checkout of `commit`, writing it from the mirror if it does not exist yet. `url` (the
/// sanitized fetch URL) names the source when the work is interrupted: that is
/// [`SourceError::Cancelled`].
pub fn ensure(
    repo: &gix::Repository,
    root: &Path,
    commit: gix::ObjectId,
    url: &str,
    interrupt: &AtomicBool,
) -> Result<Checkout, SourceError> {
    let final_dir = root.join(commit.to_string());
    if let Ok(digest) = fs::read_to_string(final_dir.join(DIGEST_FILE)) {
        touch(&final_dir);
        return Ok(Checkout {
            path: final_dir.join(TREE_DIR),
            digest,
            created: false,
        });
    }
    fs::create_dir_all(root).map_err(|e| SourceError::cache(root, e))?;
    let staging = tempfile_dir(root, &commit)?;
    let result = write_checkout(repo, &staging, commit, interrupt);
    let digest = match result {
        Ok(digest) => digest,
        Err(problem) => {
            remove_tree(&staging);
            return Err(match problem {
                CheckoutProblem::Interrupted => SourceError::Cancelled {
                    url: url.to_owned(),
                },
                problem => SourceError::cache(&staging, format!("commit {commit}: {problem}")),
            });
        }
    };
    // Files and subdirectories were created read-only; the tree's root follows once it is complete.
    fs::set_permissions(staging.join(TREE_DIR), fs::Permissions::from_mode(0o555))
        .map_err(|e| SourceError::cache(&staging, e))?;
    touch(&staging);
    if let Err(rename_error) = fs::rename(&staging, &final_dir) {
        // Another process finished the same checkout first; theirs is identical.
        remove_tree(&staging);
        if !final_dir.join(DIGEST_FILE).exists() {
            return Err(SourceError::cache(&final_dir, rename_error));
        }
    }
    Ok(Checkout {
        path: final_dir.join(TREE_DIR),
        digest,
        created: true,
    })
}

fn tempfile_dir(root: &Path, commit: &gix::ObjectId) -> Result<PathBuf, SourceError> {
    let unique = format!(
        ".tmp-{commit}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    )
    .replace(['(', ')'], "");
    let dir = root.join(unique);
    remove_tree(&dir);
    fs::create_dir_all(&dir).map_err(|e| SourceError::cache(&dir, e))?;
    Ok(dir)
}

/// Writes the commit's tree into `staging/tree` and returns its digest: SHA-256 over every path,
/// mode and blob id in index order (what `index_from_tree` would list), so it identifies the
/// content independently of the commit that carries it.
///
/// The tree is written directly, not through gix's worktree checkout: files get exactly the blob's
/// bytes (no `.gitattributes` eol or filter conversion, so the bytes are what the digest names)
/// and are created read-only (0444, 0555 when executable), which saves a second pass over every
/// file; directories become read-only once filled. Entry names are checked before use (no `.`,
/// `..`, `.git`, `/` or NUL), and every file and directory is created exclusively, so a crafted
/// tree can neither escape the checkout nor write through a symlink it planted.
fn write_checkout(
    repo: &gix::Repository,
    staging: &Path,
    commit: gix::ObjectId,
    interrupt: &AtomicBool,
) -> Result<String, CheckoutProblem> {
    let tree_id = repo
        .find_commit(commit)
        .map_err(CheckoutProblem::Commit)?
        .tree_id()
        .map_err(CheckoutProblem::Commit)?;
    let tree_dir = staging.join(TREE_DIR);
    fs::create_dir(&tree_dir).map_err(CheckoutProblem::Staging)?;
    let mut walk = TreeWalk {
        repo,
        interrupt,
        hasher: Sha256::new(),
        path: Vec::new(),
        files: Vec::new(),
        dirs: Vec::new(),
    };
    walk.walk(tree_id.detach(), &tree_dir, 0)?;
    let digest = format!("sha256:{:x}", walk.hasher.finalize());
    write_files(repo, &walk.files, interrupt)?;
    // Deepest first, so no directory is made read-only before its subdirectories are.
    for dir in walk.dirs.iter().rev() {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).map_err(|source| {
            CheckoutProblem::Io {
                path: dir.clone(),
                source,
            }
        })?;
    }
    fs::write(staging.join(DIGEST_FILE), &digest).map_err(CheckoutProblem::Staging)?;
    Ok(digest)
}

/// Why writing a checkout failed. [`ensure`] turns [`CheckoutProblem::Interrupted`] into
/// [`SourceError::Cancelled`] and everything else into [`SourceError::Cache`], whose detail is this
/// message.
#[derive(Debug, thiserror::Error)]
enum CheckoutProblem {
    /// The interrupt flag was raised: the request that wanted the checkout is gone.
    #[error("interrupted")]
    Interrupted,
    /// The commit or its tree id could not be read from the mirror.
    #[error("{0}")]
    Commit(#[source] gix::Error),
    /// Creating the staging directory's own files (the tree root, the digest file) failed.
    #[error("{0}")]
    Staging(#[source] std::io::Error),
    #[error("tree nested deeper than {MAX_TREE_DEPTH} directories")]
    TooDeep,
    #[error("tree {id}: {source}")]
    Tree {
        id: gix::ObjectId,
        source: gix::Error,
    },
    /// An entry name that could escape the checkout or reach into `.git` (`path` is relative to the
    /// tree root).
    #[error("refusing tree entry {path:?}")]
    RefusedEntry { path: String },
    /// Creating or writing `path` failed: relative to the tree root for directories, the full
    /// target for files and symlinks.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: blob {id}: {source}", target.display())]
    Blob {
        target: PathBuf,
        id: gix::ObjectId,
        source: gix::Error,
    },
    #[error("checkout thread panicked")]
    ThreadPanicked,
}

/// Deeper trees are refused rather than recursed into (a crafted repository could nest millions).
const MAX_TREE_DEPTH: usize = 512;

/// One file or symlink to write.
struct FileEntry {
    target: PathBuf,
    id: gix::ObjectId,
    kind: gix::objs::tree::EntryKind,
}

/// Walks the tree: checks every entry name, creates the directories, hashes the entries in index
/// order and collects the files for [`write_files`].
struct TreeWalk<'a> {
    repo: &'a gix::Repository,
    interrupt: &'a AtomicBool,
    hasher: Sha256,
    /// Path of the current entry relative to the tree root, `/`-separated.
    path: Vec<u8>,
    files: Vec<FileEntry>,
    /// Directories in creation order (parents before children).
    dirs: Vec<PathBuf>,
}

impl TreeWalk<'_> {
    fn walk(&mut self, id: gix::ObjectId, dir: &Path, depth: usize) -> Result<(), CheckoutProblem> {
        use gix::objs::FindExt;
        use gix::objs::tree::EntryKind;

        if depth > MAX_TREE_DEPTH {
            return Err(CheckoutProblem::TooDeep);
        }
        if self.interrupt.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(CheckoutProblem::Interrupted);
        }
        let mut tree_data = Vec::new();
        let tree = self
            .repo
            .objects
            .find_tree(&id, &mut tree_data)
            .map_err(|source| CheckoutProblem::Tree { id, source })?;
        for entry in &tree.entries {
            let name: &[u8] = entry.filename;
            let parent_len = self.path.len();
            if !self.path.is_empty() {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(name);
            if name.is_empty()
                || name == b"."
                || name == b".."
                || name.eq_ignore_ascii_case(b".git")
                || name.contains(&b'/')
                || name.contains(&0)
            {
                return Err(CheckoutProblem::RefusedEntry {
                    path: String::from_utf8_lossy(&self.path).into_owned(),
                });
            }
            let target = dir.join(std::ffi::OsStr::from_bytes(name));
            let kind = entry.mode.kind();
            match kind {
                EntryKind::Tree => {
                    fs::create_dir(&target).map_err(|e| self.io_error(e))?;
                    self.dirs.push(target.clone());
                    self.walk(entry.oid.to_owned(), &target, depth + 1)?;
                }
                EntryKind::Blob | EntryKind::BlobExecutable | EntryKind::Link => {
                    self.hash_entry(kind, entry.oid);
                    self.files.push(FileEntry {
                        target,
                        id: entry.oid.to_owned(),
                        kind,
                    });
                }
                // A submodule: an empty directory, as git leaves an uninitialised one.
                EntryKind::Commit => {
                    fs::create_dir(&target).map_err(|e| self.io_error(e))?;
                    self.dirs.push(target);
                    self.hash_entry(kind, entry.oid);
                }
            }
            self.path.truncate(parent_len);
        }
        Ok(())
    }

    /// An I/O failure at the current entry, named by its path relative to the tree root.
    fn io_error(&self, source: std::io::Error) -> CheckoutProblem {
        CheckoutProblem::Io {
            path: PathBuf::from(std::ffi::OsStr::from_bytes(&self.path)),
            source,
        }
    }

    fn hash_entry(&mut self, kind: gix::objs::tree::EntryKind, id: &gix::oid) {
        self.hasher.update(&self.path);
        self.hasher.update([0]);
        self.hasher.update(format!("{:o}", kind as u16));
        self.hasher.update([0]);
        self.hasher.update(id.as_bytes());
    }
}

/// Writes files and symlinks, split over the available cores: creating thousands of small files
/// is bound by the file system's per-file work, which runs in parallel. Files are created
/// exclusively (never through something already there) and read-only from the start.
fn write_files(
    repo: &gix::Repository,
    files: &[FileEntry],
    interrupt: &AtomicBool,
) -> Result<(), CheckoutProblem> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 8)
        .min(files.len() / 256 + 1);
    if threads == 1 {
        return write_file_chunk(repo, files, interrupt);
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                let repo = repo.clone();
                scope.spawn(move || write_file_chunk(&repo, part, interrupt))
            })
            .collect();
        workers.into_iter().try_for_each(|worker| {
            worker
                .join()
                .unwrap_or(Err(CheckoutProblem::ThreadPanicked))
        })
    })
}

fn write_file_chunk(
    repo: &gix::Repository,
    files: &[FileEntry],
    interrupt: &AtomicBool,
) -> Result<(), CheckoutProblem> {
    use gix::objs::FindExt;
    use gix::objs::tree::EntryKind;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let mut buffer = Vec::new();
    for file in files {
        if interrupt.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(CheckoutProblem::Interrupted);
        }
        let io_error = |source| CheckoutProblem::Io {
            path: file.target.clone(),
            source,
        };
        let data = repo
            .objects
            .find_blob(&file.id, &mut buffer)
            .map_err(|source| CheckoutProblem::Blob {
                target: file.target.clone(),
                id: file.id,
                source,
            })?
            .data;
        if file.kind == EntryKind::Link {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(data), &file.target)
                .map_err(io_error)?;
            continue;
        }
        let mode = if file.kind == EntryKind::BlobExecutable {
            0o555
        } else {
            0o444
        };
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&file.target)
            .and_then(|mut handle| handle.write_all(data))
            .map_err(io_error)?;
    }
    Ok(())
}

fn touch(dir: &Path) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    // Best effort: a failed touch only makes the checkout an earlier GC candidate.
    let _ = fs::write(dir.join(LAST_USED_FILE), now.to_string());
}

fn last_used(dir: &Path) -> u128 {
    fs::read_to_string(dir.join(LAST_USED_FILE))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Removes a directory tree that may contain read-only directories.
pub(crate) fn remove_tree(path: &Path) {
    fn make_writable(path: &Path) {
        let Ok(metadata) = fs::symlink_metadata(path) else {
            return;
        };
        if metadata.is_dir() {
            let mut permissions = metadata.permissions();
            permissions.set_mode(permissions.mode() | 0o700);
            let _ = fs::set_permissions(path, permissions);
            if let Ok(entries) = fs::read_dir(path) {
                for entry in entries.flatten() {
                    make_writable(&entry.path());
                }
            }
        }
    }
    make_writable(path);
    let _ = fs::remove_dir_all(path);
}

/// Keeps the `keep` most recently used checkouts (and always those in `protect`), deleting the rest.
/// Returns how many were removed.
pub fn collect_garbage(root: &Path, keep: usize, protect: &[gix::ObjectId]) -> usize {
    let Ok(entries) = fs::read_dir(root) else {
        return 0;
    };
    let protected: Vec<String> = protect.iter().map(|id| id.to_string()).collect();
    let mut checkouts: Vec<(u128, PathBuf)> = entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.len() == 40 && !protected.contains(&name)
        })
        .map(|entry| (last_used(&entry.path()), entry.path()))
        .collect();
    let keep_others = keep.saturating_sub(protected.len());
    if checkouts.len() <= keep_others {
        return 0;
    }
    checkouts.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    let doomed = checkouts.split_off(keep_others);
    for (_, path) in &doomed {
        tracing::debug!(path = %path.display(), "removing least recently used checkout");
        remove_tree(path);
    }
    doomed.len()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::Command;
    use std::sync::atomic::AtomicBool;

    use sha2::{Digest, Sha256};

    fn git(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
        use std::io::Write;
        let mut child = Command::new("git")
            .current_dir(dir)
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(["-c", "user.name=t", "-c", "user.email=t@e"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.unwrap_or_default())
            .expect("write stdin");
        let output = child.wait_with_output().expect("git output");
        assert!(output.status.success(), "git {args:?}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// The digest as it was defined over gix's index of the tree; the direct tree writer must keep it.
    fn index_digest(repo: &gix::Repository, commit: gix::ObjectId) -> String {
        let tree = repo
            .find_commit(commit)
            .expect("test setup")
            .tree_id()
            .expect("test setup");
        let index = repo.index_from_tree(&tree).expect("test setup");
        let mut hasher = Sha256::new();
        for entry in index.entries() {
            hasher.update(entry.path(&index));
            hasher.update([0]);
            hasher.update(format!("{:o}", entry.mode.bits()));
            hasher.update([0]);
            hasher.update(entry.id.as_bytes());
        }
        format!("sha256:{:x}", hasher.finalize())
    }

    #[test]
    fn writes_files_modes_and_symlinks_read_only_with_the_index_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("a/b")).expect("test setup");
        std::fs::write(work.join("a/b/c.yaml"), "c: 1\n").expect("test setup");
        std::fs::write(work.join("a-b"), "sorts before a/").expect("test setup");
        std::fs::write(work.join("run.sh"), "#!/bin/sh\n").expect("test setup");
        std::fs::set_permissions(work.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .expect("test setup");
        std::os::unix::fs::symlink("a/b/c.yaml", work.join("link")).expect("test setup");
        // An eol attribute must not change the bytes (git would write CRLF): the checkout holds the
        // blobs as committed.
        std::fs::write(work.join(".gitattributes"), "*.yaml text eol=crlf\n").expect("test setup");
        git(&work, &["init", "-q"], None);
        git(&work, &["add", "-A"], None);
        git(&work, &["commit", "-qm", "x"], None);
        let commit: gix::ObjectId = git(&work, &["rev-parse", "HEAD"], None)
            .parse()
            .expect("test setup");
        let repo = gix::open(&work).expect("open");

        let root = dir.path().join("checkouts");
        let checkout = super::ensure(
            &repo,
            &root,
            commit,
            "file:///test",
            &AtomicBool::new(false),
        )
        .expect("ok");
        assert_eq!(checkout.digest, index_digest(&repo, commit));
        let tree = &checkout.path;
        assert_eq!(
            std::fs::read(tree.join("a/b/c.yaml")).expect("test setup"),
            b"c: 1\n"
        );
        let mode = |p: &str| {
            std::fs::symlink_metadata(tree.join(p))
                .expect("test setup")
                .permissions()
                .mode()
        };
        assert_eq!(mode("a/b/c.yaml") & 0o777, 0o444);
        assert_eq!(mode("run.sh") & 0o777, 0o555);
        assert_eq!(mode("a/b") & 0o777, 0o555);
        assert_eq!(mode(".") & 0o777, 0o555);
        assert_eq!(
            std::fs::read_link(tree.join("link")).expect("test setup"),
            Path::new("a/b/c.yaml")
        );
        super::remove_tree(&root);
    }

    #[test]
    fn a_crafted_tree_entry_that_escapes_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("test setup");
        git(&work, &["init", "-q"], None);
        let blob = git(&work, &["hash-object", "-w", "--stdin"], Some(b"evil"));
        let blob = gix::ObjectId::from_hex(blob.as_bytes()).expect("test setup");
        let mut tree = b"100644 ..\0".to_vec();
        tree.extend_from_slice(blob.as_bytes());
        let tree = git(
            &work,
            &["hash-object", "-w", "-t", "tree", "--literally", "--stdin"],
            Some(&tree),
        );
        let commit = git(&work, &["commit-tree", &tree, "-m", "evil"], None);
        let repo = gix::open(&work).expect("open");
        let root = dir.path().join("checkouts");
        let err = super::ensure(
            &repo,
            &root,
            commit.parse().expect("test setup"),
            "file:///test",
            &AtomicBool::new(false),
        )
        .expect_err("escaping entry");
        assert!(
            err.to_string().contains("refusing tree entry \"..\""),
            "{err}"
        );
        assert!(!dir.path().join("evil").exists());
        super::remove_tree(&root);
    }

    #[test]
    fn an_interrupted_checkout_is_a_cancellation_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("test setup");
        std::fs::write(work.join("a.yaml"), "a: 1\n").expect("test setup");
        git(&work, &["init", "-q"], None);
        git(&work, &["add", "-A"], None);
        git(&work, &["commit", "-qm", "x"], None);
        let commit: gix::ObjectId = git(&work, &["rev-parse", "HEAD"], None)
            .parse()
            .expect("test setup");
        let repo = gix::open(&work).expect("open");
        let root = dir.path().join("checkouts");
        let err = super::ensure(&repo, &root, commit, "file:///test", &AtomicBool::new(true))
            .expect_err("interrupted");
        assert_eq!(
            err,
            crate::SourceError::Cancelled {
                url: "file:///test".into()
            }
        );
        assert_eq!(
            std::fs::read_dir(&root).expect("root").count(),
            0,
            "the staging directory is removed"
        );
    }
}
