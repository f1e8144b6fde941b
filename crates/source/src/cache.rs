//! [`SourceCache`]: the on-disk cache and the stage's entry point.
//!
//! Layout under the root: `mirrors/<readable-url>-<hash>.git` (one bare, shallow mirror per normalised
//! URL, no credentials in the name) and `checkouts/<commit>/` (see [`crate::checkout`]).
//!
//! Invariants: a mirror is written only while its per-URL lock is held; concurrent requests for one
//! URL share a single sync (ref listing + fetch if needed) and its result; a fetch happens only when
//! the remote's ref listing differs from the mirror's; gix runs on blocking threads, bounded by the
//! fetch timeout; dropping the future interrupts the gix work it started.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gix::remote::fetch::Shallow;
use serde::Serialize;

use crate::checkout;
use crate::error::SourceError;
use crate::remote::{Askpass, SyncOutcome, Transport};
use crate::resolve::{self, Resolved};
use crate::spec::{Auth, SourceSpec};
use crate::url::{RemoteUrl, mirror_dir_name};
use crate::verify::{self, Signed};

/// Cache settings.
#[derive(Clone, Debug)]
pub struct CacheOptions {
    pub root: PathBuf,
    /// Bound on one sync or deepening, connection included.
    pub fetch_timeout: Duration,
    /// Refuse (and drop) mirrors whose object store grows beyond this.
    pub max_repo_bytes: Option<u64>,
    /// How many per-commit checkouts to keep; least recently used ones are deleted beyond that.
    pub max_checkouts: usize,
}

impl CacheOptions {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CacheOptions {
            root: root.into(),
            fetch_timeout: Duration::from_secs(120),
            max_repo_bytes: None,
            max_checkouts: 64,
        }
    }
}

/// The stage's output.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Artifact {
    /// The URL without credentials.
    pub url: String,
    pub commit: String,
    /// `main@sha1:<hex>`, `v1.2.0@sha1:<hex>` or `sha1:<hex>`.
    pub revision: String,
    pub metadata: CommitMetadata,
    /// Read-only tree of the commit, shared by every artifact of that commit.
    pub checkout: PathBuf,
    /// `sha256:<hex>` over paths, modes and blob ids of the tree.
    pub digest: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CommitMetadata {
    pub author: Signature,
    pub committer: Signature,
    pub message: String,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub email: String,
    /// Seconds since the Unix epoch.
    pub time: i64,
    /// Offset from UTC in seconds.
    pub offset: i32,
}

/// Counters for observing the cache (tests assert on them; operators can log them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Ref listings sent to remotes (one per sync).
    pub ref_listings: u64,
    /// Packs fetched (syncs that found a change, plus deepenings).
    pub fetches: u64,
    pub deepenings: u64,
    pub checkouts_created: u64,
    pub checkouts_removed: u64,
}

type SharedSync = Arc<tokio::sync::OnceCell<Result<Arc<SyncOutcome>, SourceError>>>;

#[derive(Default)]
struct Counters {
    ref_listings: AtomicU64,
    fetches: AtomicU64,
    deepenings: AtomicU64,
    checkouts_created: AtomicU64,
    checkouts_removed: AtomicU64,
}

#[derive(Default)]
struct Shared {
    syncs_in_flight: Mutex<HashMap<String, SharedSync>>,
    mirror_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// One checkout per commit is written at a time; others wait and then reuse it.
    checkout_locks: Mutex<HashMap<gix::ObjectId, Arc<tokio::sync::Mutex<()>>>>,
    counters: Counters,
}

/// The mirror cache. Cheap to clone; clones share mirrors, locks and counters.
#[derive(Clone)]
pub struct SourceCache {
    options: Arc<CacheOptions>,
    shared: Arc<Shared>,
}

/// Sets the interrupt flag when the owning future is dropped, so abandoned gix work stops.
struct InterruptOnDrop(Arc<AtomicBool>);

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl SourceCache {
    pub fn new(options: CacheOptions) -> Self {
        SourceCache {
            options: Arc::new(options),
            shared: Arc::default(),
        }
    }

    pub fn options(&self) -> &CacheOptions {
        &self.options
    }

    pub fn stats(&self) -> CacheStats {
        let c = &self.shared.counters;
        CacheStats {
            ref_listings: c.ref_listings.load(Ordering::Relaxed),
            fetches: c.fetches.load(Ordering::Relaxed),
            deepenings: c.deepenings.load(Ordering::Relaxed),
            checkouts_created: c.checkouts_created.load(Ordering::Relaxed),
            checkouts_removed: c.checkouts_removed.load(Ordering::Relaxed),
        }
    }

    /// Where the mirror of `url` lives (for inspection; never contains credentials).
    pub fn mirror_path(&self, url: &str) -> Result<PathBuf, SourceError> {
        let url = RemoteUrl::parse(url)?;
        Ok(self.mirror_dir(&url))
    }

    fn mirror_dir(&self, url: &RemoteUrl) -> PathBuf {
        self.options.root.join("mirrors").join(mirror_dir_name(url))
    }

    fn checkouts_root(&self) -> PathBuf {
        self.options.root.join("checkouts")
    }

    /// Resolves, fetches (if the remote changed), verifies and checks out `spec`.
    pub async fn fetch(&self, spec: &SourceSpec) -> Result<Artifact, SourceError> {
        let url = RemoteUrl::parse(&spec.url)?;
        if let Auth::Ssh { private_key, .. } = &spec.auth
            && !private_key.is_file()
        {
            return Err(SourceError::AuthFailed {
                url: url.fetch_url.clone(),
                detail: format!("SSH key file {} does not exist", private_key.display()),
            });
        }
        let mirror = self.mirror_dir(&url);
        let outcome = self.sync_coalesced(&url, &spec.auth, &mirror).await?;
        let resolved = resolve::resolve(&outcome.refs, &spec.reference, &url.fetch_url)?;
        self.ensure_commit_present(&url, &spec.auth, &mirror, &resolved)
            .await?;

        let checkout_lock = {
            let mut locks = self
                .shared
                .checkout_locks
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            locks.entry(resolved.commit).or_default().clone()
        };
        // Like the mirror lock, held by the blocking task until the checkout work really stops.
        let checkout_held = checkout_lock.lock_owned().await;
        let interrupt = Arc::new(AtomicBool::new(false));
        let _guard = InterruptOnDrop(interrupt.clone());
        let cache = self.clone();
        let spec = spec.clone();
        tokio::task::spawn_blocking(move || {
            let _held = checkout_held;
            cache.finish(&spec, &url, &mirror, &resolved, &interrupt)
        })
        .await
        .map_err(|e| SourceError::cache(&self.options.root, format!("checkout task failed: {e}")))?
    }

    /// Runs one sync per URL at a time; requests arriving while it runs wait for and share its result.
    async fn sync_coalesced(
        &self,
        url: &RemoteUrl,
        auth: &Auth,
        mirror: &Path,
    ) -> Result<Arc<SyncOutcome>, SourceError> {
        let cell = {
            let mut in_flight = self
                .shared
                .syncs_in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            in_flight.entry(url.cache_key.clone()).or_default().clone()
        };
        let result = cell
            .get_or_init(|| async {
                self.shared
                    .counters
                    .ref_listings
                    .fetch_add(1, Ordering::Relaxed);
                let outcome = self
                    .run_blocking(
                        url,
                        auth,
                        move |transport, mirror| transport.sync(mirror),
                        mirror,
                    )
                    .await?;
                if outcome.fetched {
                    self.shared.counters.fetches.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Arc::new(outcome))
            })
            .await
            .clone();
        let mut in_flight = self
            .shared
            .syncs_in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if in_flight
            .get(&url.cache_key)
            .is_some_and(|current| Arc::ptr_eq(current, &cell))
        {
            in_flight.remove(&url.cache_key);
        }
        result
    }

    fn mirror_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .shared
            .mirror_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        locks.entry(key.to_owned()).or_default().clone()
    }

    /// Runs transport work on a blocking thread under the mirror's lock, with the fetch timeout; on
    /// timeout or drop the gix work is interrupted. The lock travels into the blocking task and is
    /// released only when that work has really stopped, so a fetch that follows a cancelled one
    /// never meets its half-done writes or lock files.
    async fn run_blocking<T: Send + 'static>(
        &self,
        url: &RemoteUrl,
        auth: &Auth,
        work: impl FnOnce(&Transport<'_>, &Path) -> Result<T, SourceError> + Send + 'static,
        mirror: &Path,
    ) -> Result<T, SourceError> {
        let lock = self.mirror_lock(&url.cache_key);
        let interrupt = Arc::new(AtomicBool::new(false));
        let _guard = InterruptOnDrop(interrupt.clone());
        let (url_owned, auth_owned, mirror_owned) = (url.clone(), auth.clone(), mirror.to_owned());
        let timeout = self.options.fetch_timeout;
        let max_repo_bytes = self.options.max_repo_bytes;
        let flag = interrupt.clone();
        let job = move |held: tokio::sync::OwnedMutexGuard<()>| {
            let _held = held;
            if let Some(parent) = mirror_owned.parent() {
                std::fs::create_dir_all(parent).map_err(|e| SourceError::cache(parent, e))?;
            }
            let ssh_log = if url_owned.is_ssh {
                let log = tempfile::Builder::new()
                    .prefix("capstan-ssh-")
                    .suffix(".log")
                    .tempfile()
                    .map_err(|e| SourceError::cache(&std::env::temp_dir(), e))?;
                Some(log.into_temp_path())
            } else {
                None
            };
            let askpass = match &auth_owned {
                Auth::Ssh {
                    passphrase: Some(passphrase),
                    ..
                } if url_owned.is_ssh => Some(Askpass::new(passphrase)?),
                _ => None,
            };
            let transport = Transport {
                ssh_log,
                url: &url_owned,
                auth: &auth_owned,
                connect_timeout: timeout,
                interrupt: flag,
                max_repo_bytes,
                askpass,
            };
            work(&transport, &mirror_owned)
        };
        // The timeout covers the wait for the lock too: work that hangs in a blocking read cannot
        // be stopped by the interrupt flag, and must not make later fetches wait forever.
        let locked_then_run = async move {
            let held = lock.lock_owned().await;
            tokio::task::spawn_blocking(move || job(held)).await
        };
        match tokio::time::timeout(timeout, locked_then_run).await {
            Ok(Ok(result)) => result,
            Ok(Err(join_error)) => Err(SourceError::Transport {
                url: url.fetch_url.clone(),
                detail: format!("fetch task failed: {join_error}"),
            }),
            Err(_) => Err(SourceError::Timeout {
                url: url.fetch_url.clone(),
                seconds: timeout.as_secs(),
            }),
        }
    }

    /// Deepens the shallow mirror step by step until a pinned commit (and, for branch pins, its
    /// ancestry from the branch tip) is available; a commit still missing after unshallowing does not
    /// exist on any branch or tag.
    async fn ensure_commit_present(
        &self,
        url: &RemoteUrl,
        auth: &Auth,
        mirror: &Path,
        resolved: &Resolved,
    ) -> Result<(), SourceError> {
        const STEPS: [Option<u32>; 3] = [Some(32), Some(1024), None];
        let mut step = 0;
        loop {
            let (commit, tip, mirror_owned) =
                (resolved.commit, resolved.branch_tip, mirror.to_owned());
            let present =
                tokio::task::spawn_blocking(move || commit_reachable(&mirror_owned, commit, tip))
                    .await
                    .unwrap_or(false);
            if present {
                return Ok(());
            }
            let Some(depth) = STEPS.get(step) else {
                return Err(SourceError::RefNotFound {
                    url: url.fetch_url.clone(),
                    reference: match tip {
                        Some(_) => format!(
                            "commit {commit} on branch {}",
                            resolved.revision_name.as_deref().unwrap_or_default()
                        ),
                        None => format!("commit {commit}"),
                    },
                });
            };
            step += 1;
            let shallow = depth.map_or_else(Shallow::undo, Shallow::Deepen);
            tracing::info!(url = %url.fetch_url, %commit, ?depth, "deepening mirror for a pinned commit");
            self.run_blocking(
                url,
                auth,
                move |transport, mirror| transport.deepen(mirror, shallow),
                mirror,
            )
            .await?;
            self.shared
                .counters
                .deepenings
                .fetch_add(1, Ordering::Relaxed);
            self.shared.counters.fetches.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn finish(
        &self,
        spec: &SourceSpec,
        url: &RemoteUrl,
        mirror: &Path,
        resolved: &Resolved,
        interrupt: &AtomicBool,
    ) -> Result<Artifact, SourceError> {
        let repo = gix::open_opts(mirror, gix::open::Options::isolated())
            .map_err(|e| SourceError::cache(mirror, e))?;
        if let Some(policy) = &spec.verification {
            let object = match resolved.annotated_tag {
                Some(tag) => Signed::Tag(tag),
                None => Signed::Commit(resolved.commit),
            };
            verify::verify(&repo, mirror, policy, object, &url.fetch_url)?;
        }
        let metadata = commit_metadata(&repo, mirror, resolved.commit)?;
        let checkouts_root = self.checkouts_root();
        let checkout = checkout::ensure(
            &repo,
            &checkouts_root,
            resolved.commit,
            &url.fetch_url,
            interrupt,
        )?;
        if checkout.created {
            self.shared
                .counters
                .checkouts_created
                .fetch_add(1, Ordering::Relaxed);
            let removed = checkout::collect_garbage(
                &checkouts_root,
                self.options.max_checkouts,
                &[resolved.commit],
            );
            self.shared
                .counters
                .checkouts_removed
                .fetch_add(removed as u64, Ordering::Relaxed);
        }
        let hex = resolved.commit.to_string();
        Ok(Artifact {
            url: url.fetch_url.clone(),
            revision: match &resolved.revision_name {
                Some(name) => format!("{name}@sha1:{hex}"),
                None => format!("sha1:{hex}"),
            },
            commit: hex,
            metadata,
            checkout: checkout.path,
            digest: checkout.digest,
        })
    }
}

fn commit_reachable(
    mirror: &Path,
    commit: gix::ObjectId,
    branch_tip: Option<gix::ObjectId>,
) -> bool {
    let Ok(repo) = gix::open_opts(mirror, gix::open::Options::isolated()) else {
        return false;
    };
    if repo.find_commit(commit).is_err() {
        return false;
    }
    let Some(tip) = branch_tip else { return true };
    let Ok(walk) = repo.rev_walk([tip]).all() else {
        return false;
    };
    walk.flatten().any(|info| info.id == commit)
}

fn commit_metadata(
    repo: &gix::Repository,
    mirror: &Path,
    id: gix::ObjectId,
) -> Result<CommitMetadata, SourceError> {
    let error = |e: &dyn std::fmt::Display| SourceError::cache(mirror, format!("commit {id}: {e}"));
    let commit = repo.find_commit(id).map_err(|e| error(&e))?;
    let signature = |sig: gix::actor::SignatureRef<'_>| -> Result<Signature, SourceError> {
        let time = sig.time().map_err(|e| error(&e))?;
        Ok(Signature {
            name: sig.name.to_string(),
            email: sig.email.to_string(),
            time: time.seconds,
            offset: time.offset,
        })
    };
    Ok(CommitMetadata {
        author: signature(commit.author().map_err(|e| error(&e))?)?,
        committer: signature(commit.committer().map_err(|e| error(&e))?)?,
        message: commit.message_raw().map_err(|e| error(&e))?.to_string(),
    })
}
