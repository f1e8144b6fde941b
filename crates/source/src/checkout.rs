//! Per-commit checkouts: `<root>/<commit>/tree` holds the files, made read-only after writing so
//! every app sharing the commit sees the same bytes; `<root>/<commit>/digest` holds the content
//! digest; `<root>/<commit>/last-used` drives LRU garbage collection. A checkout is written under a
//! temporary name and renamed into place, so readers never see a half-written tree.

use std::fs;
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

/// Returns the checkout of `commit`, writing it from the mirror if it does not exist yet.
pub fn ensure(
    repo: &gix::Repository,
    root: &Path,
    commit: gix::ObjectId,
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
        Err(e) => {
            remove_tree(&staging);
            return Err(e);
        }
    };
    make_read_only(&staging.join(TREE_DIR)).map_err(|e| SourceError::cache(&staging, e))?;
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

/// Writes the tree with gix's own checkout (the one `gix clone` uses) and returns the digest: SHA-256
/// over every path, mode and blob id in index order, so it identifies the content independently of
/// the commit that carries it.
fn write_checkout(
    repo: &gix::Repository,
    staging: &Path,
    commit: gix::ObjectId,
    interrupt: &AtomicBool,
) -> Result<String, SourceError> {
    let cache_error =
        |e: &dyn std::fmt::Display| SourceError::cache(staging, format!("commit {commit}: {e}"));
    let tree_id = repo
        .find_commit(commit)
        .map_err(|e| cache_error(&e))?
        .tree_id()
        .map_err(|e| cache_error(&e))?;
    let mut index = repo
        .index_from_tree(&tree_id)
        .map_err(|e| cache_error(&e))?;
    let mut hasher = Sha256::new();
    for entry in index.entries() {
        hasher.update(entry.path(&index));
        hasher.update([0]);
        hasher.update(format!("{:o}", entry.mode.bits()));
        hasher.update([0]);
        hasher.update(entry.id.as_bytes());
    }
    let digest = format!("sha256:{:x}", hasher.finalize());

    let tree_dir = staging.join(TREE_DIR);
    fs::create_dir_all(&tree_dir).map_err(|e| cache_error(&e))?;
    let mut options = repo
        .checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)
        .map_err(|e| cache_error(&e))?;
    options.destination_is_initially_empty = true;
    let objects = repo
        .objects
        .clone()
        .into_arc()
        .map_err(|e| cache_error(&e))?;
    let outcome = gix::worktree::state::checkout(
        &mut index,
        &tree_dir,
        objects,
        &gix::progress::Discard,
        &gix::progress::Discard,
        interrupt,
        options,
    )
    .map_err(|e| cache_error(&e))?;
    if let Some(failure) = outcome.errors.first() {
        return Err(cache_error(&format!("{}: {}", failure.path, failure.error)));
    }
    fs::write(staging.join(DIGEST_FILE), &digest).map_err(|e| cache_error(&e))?;
    Ok(digest)
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

fn make_read_only(path: &Path) -> std::io::Result<()> {
    let metadata = fs::symlink_metadata(path)?;
    if metadata.file_type().is_symlink() {
        return Ok(());
    }
    if metadata.is_dir() {
        for entry in fs::read_dir(path)? {
            make_read_only(&entry?.path())?;
        }
    }
    let mut permissions = metadata.permissions();
    permissions.set_mode(permissions.mode() & !0o222);
    fs::set_permissions(path, permissions)
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
