//! The GitRepository controller: one fetch per GitRepository on its interval (or at once on a
//! webhook), shared by every Application that points at it through [`Artifacts`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use capstan_source::{Artifact, Auth, Reference, SourceSpec, Verification};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::Instrument;

use crate::api::{ArtifactStatus, GitRepository, GitRepositorySpec, GitRepositoryStatus};
use crate::conditions::{Outcome, conditions};
use crate::{Context, ControllerError, now};

/// The newest artifact of each GitRepository, by (namespace, name). Applications read it; only the
/// GitRepository controller writes it.
#[derive(Default)]
pub struct Artifacts(RwLock<HashMap<(String, String), Arc<Artifact>>>);

impl Artifacts {
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Artifact>> {
        self.read()
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Stores `artifact`; true when the commit changed (or there was none).
    fn set(&self, namespace: &str, name: &str, artifact: Artifact) -> bool {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_string(), name.to_string());
        let changed = map
            .get(&key)
            .is_none_or(|old| old.commit != artifact.commit);
        map.insert(key, Arc::new(artifact));
        changed
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<(String, String), Arc<Artifact>>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }
}

pub async fn reconcile(
    repo: Arc<GitRepository>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    let _busy = ctx.metrics.in_flight("gitrepository");
    let namespace = repo.namespace().unwrap_or_default();
    let name = repo.name_any();
    if repo.spec.suspend {
        return Ok(Action::await_change());
    }
    let interval = repo.spec.interval;
    let started = Instant::now();
    let span = tracing::info_span!("app", repository = %format!("{namespace}/{name}"));
    let result = async {
        fetch(&ctx, &repo)
            .instrument(capstan_engine::Stage::Source.span())
            .await
    }
    .instrument(span)
    .await;
    ctx.metrics
        .git_fetch_duration
        .observe(started.elapsed().as_secs_f64());
    let previous = repo.status.clone().unwrap_or_default();
    let mut status = GitRepositoryStatus {
        observed_generation: repo.metadata.generation,
        artifact: previous.artifact.clone(),
        conditions: Vec::new(),
    };
    let mut failure = None;
    let outcome = match result {
        Ok(artifact) => {
            let revision = artifact.revision.clone();
            let same = previous
                .artifact
                .as_ref()
                .is_some_and(|a| a.commit == artifact.commit);
            status.artifact = Some(ArtifactStatus {
                revision: artifact.revision.clone(),
                commit: artifact.commit.clone(),
                digest: artifact.digest.clone(),
                last_update_time: match (&previous.artifact, same) {
                    (Some(old), true) => old.last_update_time.clone(),
                    _ => now(),
                },
            });
            let old_checkout = ctx
                .artifacts
                .get(&namespace, &name)
                .map(|old| old.checkout.clone());
            let new_checkout = artifact.checkout.clone();
            let changed = ctx.artifacts.set(&namespace, &name, artifact);
            if changed {
                if !same {
                    ctx.kube
                        .event(
                            repo.as_ref(),
                            false,
                            "NewArtifact",
                            "Fetch",
                            format!("fetched revision {revision}"),
                        )
                        .await;
                }
                ctx.trigger_apps_of_source(&namespace, &name, old_checkout, new_checkout)
                    .await;
            }
            Outcome::Ready {
                reason: "Succeeded".into(),
                message: format!("stored artifact for revision {revision}"),
            }
        }
        Err(error) => {
            ctx.metrics.git_fetch_errors.inc();
            let message = error.to_string();
            tracing::warn!(repository = %format!("{namespace}/{name}"), %message, "fetch failed");
            ctx.kube
                .event(repo.as_ref(), true, "FetchFailed", "Fetch", message.clone())
                .await;
            failure = Some(error);
            Outcome::Failed {
                reason: "FetchFailed".into(),
                message,
            }
        }
    };
    status.conditions = conditions(
        &previous.conditions,
        &outcome,
        repo.metadata.generation,
        &now(),
    );
    if repo.status.as_ref() != Some(&status) {
        ctx.kube.patch_status(repo.as_ref(), &status).await?;
    }
    if let Some(error) = failure {
        // The error policy backs off; the status above already says why.
        return Err(ControllerError::Fetch {
            repository: format!("{namespace}/{name}"),
            source: Box::new(error),
        });
    }
    ctx.reset_backoff(&format!("repo/{namespace}/{name}"));
    Ok(Action::requeue(interval))
}

async fn fetch(ctx: &Context, repo: &GitRepository) -> Result<Artifact, ControllerError> {
    let namespace = repo.namespace().unwrap_or_default();
    let spec = source_spec(ctx, &namespace, &repo.name_any(), &repo.spec, None).await?;
    let timeout = repo.spec.timeout;
    match tokio::time::timeout(timeout, ctx.sources.fetch(&spec)).await {
        Ok(result) => result.map_err(ControllerError::from),
        Err(_) => Err(ControllerError::Timeout {
            what: format!("fetch of GitRepository {namespace}/{}", repo.name_any()),
            after: timeout,
        }),
    }
}

/// The source stage's input for a GitRepository, with its Secrets written to private files.
/// `commit` overrides the reference (a pinned app fetches its pinned commit).
pub async fn source_spec(
    ctx: &Context,
    namespace: &str,
    name: &str,
    spec: &GitRepositorySpec,
    commit: Option<&str>,
) -> Result<SourceSpec, ControllerError> {
    let reference = match commit {
        Some(commit) => Reference::Commit(commit.to_string()),
        None => reference(spec)?,
    };
    let dir = ctx.credentials_dir.join(namespace).join(name);
    let auth = match &spec.secret_ref {
        None => Auth::None,
        Some(secret) => {
            let data = ctx.kube.secret_data(namespace, &secret.name).await?;
            auth_from_secret(&data, &dir, &format!("{namespace}/{}", secret.name))?
        }
    };
    let verification = match &spec.verify {
        None => None,
        Some(verify) => {
            let data = ctx
                .kube
                .secret_data(namespace, &verify.secret_ref.name)
                .await?;
            Some(verification_from_secret(&data, &dir.join("trusted"))?)
        }
    };
    Ok(SourceSpec {
        url: spec.url.clone(),
        reference,
        auth,
        verification,
    })
}

fn reference(spec: &GitRepositorySpec) -> Result<Reference, ControllerError> {
    let Some(reference) = &spec.reference else {
        return Ok(Reference::Branch("main".into()));
    };
    let text = match (
        &reference.branch,
        &reference.tag,
        &reference.semver,
        &reference.commit,
    ) {
        (Some(branch), None, None, Some(commit)) => format!("{branch}@{commit}"),
        (_, _, _, Some(commit)) => format!("commit:{commit}"),
        (Some(branch), None, None, None) => format!("branch:{branch}"),
        (None, Some(tag), None, None) => format!("tag:{tag}"),
        (None, None, Some(range), None) => format!("semver:{range}"),
        (None, None, None, None) => "branch:main".into(),
        _ => {
            return Err(ControllerError::InvalidSpec {
                field: "spec.ref".into(),
                message: "set at most one of branch, tag and semver".into(),
            });
        }
    };
    Reference::parse(&text).map_err(ControllerError::from)
}

/// `username`+`password`, `bearerToken`, or `identity` (+ `known_hosts`) → [`Auth`]. Key files are
/// written 0600 under `dir` (named after the GitRepository, never after a credential).
fn auth_from_secret(
    data: &std::collections::BTreeMap<String, Vec<u8>>,
    dir: &Path,
    secret: &str,
) -> Result<Auth, ControllerError> {
    let text = |key: &str| -> Result<Option<String>, ControllerError> {
        data.get(key)
            .map(|v| {
                String::from_utf8(v.clone()).map_err(|_| ControllerError::InvalidSecret {
                    secret: secret.to_string(),
                    message: format!("key {key} is not UTF-8"),
                })
            })
            .transpose()
    };
    if let Some(identity) = data.get("identity") {
        let private_key = write_private(dir, "identity", identity)?;
        let known_hosts = match data.get("known_hosts") {
            Some(hosts) => Some(write_private(dir, "known_hosts", hosts)?),
            None => None,
        };
        let passphrase = text("identity.passphrase")?.map(capstan_source::Secret::new);
        return Ok(Auth::Ssh {
            private_key,
            known_hosts,
            passphrase,
        });
    }
    if let Some(token) = text("bearerToken")? {
        return Ok(Auth::Bearer { token });
    }
    match (text("username")?, text("password")?) {
        (Some(username), Some(password)) => Ok(Auth::Basic { username, password }),
        (None, None) => Err(ControllerError::InvalidSecret {
            secret: secret.to_string(),
            message: "it has none of identity, bearerToken, username+password".into(),
        }),
        _ => Err(ControllerError::InvalidSecret {
            secret: secret.to_string(),
            message: "username and password go together".into(),
        }),
    }
}

fn verification_from_secret(
    data: &std::collections::BTreeMap<String, Vec<u8>>,
    dir: &Path,
) -> Result<Verification, ControllerError> {
    let mut verification = Verification::default();
    for (key, value) in data {
        if key == "allowed_signers" {
            verification.ssh_allowed_signers = Some(write_private(dir, key, value)?);
        } else if key.ends_with(".asc") || key.ends_with(".gpg") {
            verification
                .openpgp_public_keys
                .push(write_private(dir, key, value)?);
        }
    }
    Ok(verification)
}

fn write_private(dir: &Path, name: &str, content: &[u8]) -> Result<PathBuf, ControllerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| ControllerError::Io {
        path: dir.join(name),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let path = dir.join(name);
    let staged = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&staged)
        .map_err(io)?;
    file.write_all(content).map_err(io)?;
    std::fs::rename(&staged, &path).map_err(io)?;
    Ok(path)
}

/// Whether `path` (relative, inside both checkouts) differs between two checkouts: names, file
/// contents and symlink targets (compared as text, never followed, so nothing outside the checkout
/// is read). A missing directory on either side counts as changed.
pub fn directory_changed(old: &Path, new: &Path, path: &str) -> bool {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let full = entry.path();
            let relative = full.strip_prefix(root).unwrap_or(&full).to_path_buf();
            let kind = entry.file_type()?;
            if kind.is_symlink() {
                let target = std::fs::read_link(&full)?;
                out.push((relative, target.as_os_str().as_encoded_bytes().to_vec()));
            } else if kind.is_dir() {
                out.push((relative, Vec::new()));
                walk(root, &full, out)?;
            } else {
                out.push((relative, std::fs::read(&full)?));
            }
        }
        Ok(())
    }
    let read = |root: &Path| {
        let mut out = Vec::new();
        walk(&root.join(path), &root.join(path), &mut out).map(|()| out)
    };
    match (read(old), read(new)) {
        (Ok(a), Ok(b)) => a != b,
        _ => true,
    }
}

/// Which GitRepositories a push to `urls` concerns (for the webhook receiver).
pub fn matching_repositories(
    repos: &[Arc<GitRepository>],
    urls: &[String],
    same: impl Fn(&str, &str) -> bool,
) -> Vec<ObjectRef<GitRepository>> {
    repos
        .iter()
        .filter(|repo| urls.iter().any(|url| same(url, &repo.spec.url)))
        .map(|repo| ObjectRef::from_obj(repo.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GitReference;

    fn spec(reference: GitReference) -> GitRepositorySpec {
        GitRepositorySpec {
            url: "https://example.com/r.git".into(),
            reference: Some(reference),
            ..Default::default()
        }
    }

    #[test]
    fn references_map_to_the_source_syntax() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let branch_commit = spec(GitReference {
            branch: Some("main".into()),
            commit: Some(sha.into()),
            ..Default::default()
        });
        assert_eq!(
            reference(&branch_commit).expect("valid"),
            Reference::BranchCommit {
                branch: "main".into(),
                commit: sha.into()
            }
        );
        let tag = spec(GitReference {
            tag: Some("v1".into()),
            ..Default::default()
        });
        assert_eq!(reference(&tag).expect("valid"), Reference::Tag("v1".into()));
        let both = spec(GitReference {
            tag: Some("v1".into()),
            branch: Some("main".into()),
            ..Default::default()
        });
        assert!(reference(&both).is_err());
    }

    #[test]
    fn directory_changes_are_seen_per_path() {
        let old = tempfile::tempdir().expect("old");
        let new = tempfile::tempdir().expect("new");
        for root in [old.path(), new.path()] {
            std::fs::create_dir_all(root.join("a")).expect("a");
            std::fs::create_dir_all(root.join("b")).expect("b");
            std::fs::write(root.join("a/x.yaml"), "same").expect("write");
            std::fs::write(root.join("b/y.yaml"), "before").expect("write");
        }
        std::fs::write(new.path().join("b/y.yaml"), "after").expect("write");
        assert!(!directory_changed(old.path(), new.path(), "a"));
        assert!(directory_changed(old.path(), new.path(), "b"));
        assert!(directory_changed(old.path(), new.path(), "missing"));
        std::os::unix::fs::symlink("/etc", new.path().join("a/link")).expect("symlink");
        assert!(
            directory_changed(old.path(), new.path(), "a"),
            "a new symlink is a change"
        );
    }

    #[test]
    fn secrets_become_auth_without_leaking() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut data = std::collections::BTreeMap::new();
        data.insert("username".to_string(), b"git".to_vec());
        data.insert("password".to_string(), b"hunter2".to_vec());
        let auth = auth_from_secret(&data, dir.path(), "ns/creds").expect("basic");
        assert!(!format!("{auth:?}").contains("hunter2"));
        data.clear();
        data.insert("identity".to_string(), b"KEY".to_vec());
        let Auth::Ssh { private_key, .. } =
            auth_from_secret(&data, dir.path(), "ns/creds").expect("ssh")
        else {
            panic!("expected ssh auth")
        };
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&private_key)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        data.clear();
        data.insert("username".to_string(), b"git".to_vec());
        let err = auth_from_secret(&data, dir.path(), "ns/creds").expect_err("incomplete");
        assert!(err.to_string().contains("ns/creds"));
    }
}
