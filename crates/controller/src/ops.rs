//! What `capstan app …` and `capstan source list|get` do to the custom resources: the CLI formats,
//! this module reads and writes (through [`KubeApi`]), so the rules (what a rollback may pin, how
//! a sync is requested) live next to the controller that honours them.

use std::collections::BTreeMap;

use kube::api::{ListParams, Patch, PatchParams};

use crate::ControllerError;
use crate::api::{Application, GitRepository, PIN_ANNOTATION, REQUESTED_AT_ANNOTATION};
use crate::kube_api::KubeApi;

fn kube_error(what: String) -> impl FnOnce(kube::Error) -> ControllerError {
    move |source| ControllerError::Kube { what, source }
}

pub async fn list_apps(
    api: &KubeApi,
    namespace: Option<&str>,
) -> Result<Vec<Application>, ControllerError> {
    let mut apps = api
        .apps(namespace)
        .list(&ListParams::default())
        .await
        .map_err(kube_error("list Applications".into()))?
        .items;
    apps.sort_by_key(|a| (a.metadata.namespace.clone(), a.metadata.name.clone()));
    Ok(apps)
}

pub async fn get_app(
    api: &KubeApi,
    namespace: &str,
    name: &str,
) -> Result<Application, ControllerError> {
    api.apps(Some(namespace))
        .get(name)
        .await
        .map_err(kube_error(format!("get Application {namespace}/{name}")))
}

pub async fn list_sources(
    api: &KubeApi,
    namespace: Option<&str>,
) -> Result<Vec<GitRepository>, ControllerError> {
    let mut repos = api
        .repos(namespace)
        .list(&ListParams::default())
        .await
        .map_err(kube_error("list GitRepositories".into()))?
        .items;
    repos.sort_by_key(|r| (r.metadata.namespace.clone(), r.metadata.name.clone()));
    Ok(repos)
}

pub async fn get_source(
    api: &KubeApi,
    namespace: &str,
    name: &str,
) -> Result<GitRepository, ControllerError> {
    api.repos(Some(namespace))
        .get(name)
        .await
        .map_err(kube_error(format!("get GitRepository {namespace}/{name}")))
}

/// Asks the controller for a sync now; returns the request's timestamp (the status echoes it in
/// `lastHandledRequest` once handled).
pub async fn request_sync(
    api: &KubeApi,
    namespace: &str,
    name: &str,
) -> Result<String, ControllerError> {
    let stamp = crate::now();
    // Two requests in one second must still differ.
    let stamp = format!("{stamp}#{}", std::process::id());
    api.annotate(
        &api.apps(Some(namespace)),
        name,
        BTreeMap::from([(REQUESTED_AT_ANNOTATION, Some(stamp.clone()))]),
    )
    .await?;
    Ok(stamp)
}

/// `spec.suspend`, like `flux suspend`.
pub async fn set_suspend(
    api: &KubeApi,
    namespace: &str,
    name: &str,
    suspend: bool,
) -> Result<(), ControllerError> {
    let patch = serde_json::json!({ "spec": { "suspend": suspend } });
    api.apps(Some(namespace))
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(kube_error(format!("patch Application {namespace}/{name}")))
}

/// Pins the app to a revision from its history (a full or abbreviated commit, or a revision string
/// like `main@sha1:…`); returns the full commit.
pub async fn rollback(
    api: &KubeApi,
    namespace: &str,
    name: &str,
    to: &str,
) -> Result<String, ControllerError> {
    let app = get_app(api, namespace, name).await?;
    let history = app.status.map(|s| s.history).unwrap_or_default();
    let commit = pick_revision(&history, to).ok_or_else(|| ControllerError::InvalidSpec {
        field: "--to".into(),
        message: format!(
            "{to} is not in the history of {namespace}/{name} (known: {})",
            known_revisions(&history)
        ),
    })?;
    api.annotate(
        &api.apps(Some(namespace)),
        name,
        BTreeMap::from([(PIN_ANNOTATION, Some(commit.clone()))]),
    )
    .await?;
    Ok(commit)
}

pub async fn unpin(api: &KubeApi, namespace: &str, name: &str) -> Result<(), ControllerError> {
    api.annotate(
        &api.apps(Some(namespace)),
        name,
        BTreeMap::from([(PIN_ANNOTATION, None)]),
    )
    .await
    .map(|_| ())
}

/// The commit of a history entry matching `to` (a commit prefix of at least 7 hex digits, or the
/// whole revision string). Only revisions that synced successfully qualify.
fn pick_revision(history: &[crate::api::HistoryEntry], to: &str) -> Option<String> {
    let commit_of = |revision: &str| revision.rsplit(':').next().unwrap_or(revision).to_string();
    history
        .iter()
        .filter(|h| h.result == "Succeeded")
        .find(|h| h.revision == to || (to.len() >= 7 && commit_of(&h.revision).starts_with(to)))
        .map(|h| commit_of(&h.revision))
}

fn known_revisions(history: &[crate::api::HistoryEntry]) -> String {
    let mut known: Vec<&str> = history
        .iter()
        .filter(|h| h.result == "Succeeded")
        .map(|h| h.revision.as_str())
        .collect();
    known.dedup();
    if known.is_empty() {
        "none".into()
    } else {
        known.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::HistoryEntry;

    #[test]
    fn rollback_accepts_only_successful_revisions_from_history() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let history = vec![
            HistoryEntry {
                revision: format!("main@sha1:{sha}"),
                result: crate::api::SyncResult::Succeeded,
                ..Default::default()
            },
            HistoryEntry {
                revision: "main@sha1:ffffffffffffffffffffffffffffffffffffffff".into(),
                result: crate::api::SyncResult::Failed,
                ..Default::default()
            },
        ];
        assert_eq!(pick_revision(&history, "0123456").as_deref(), Some(sha));
        assert_eq!(
            pick_revision(&history, &format!("main@sha1:{sha}")).as_deref(),
            Some(sha)
        );
        assert_eq!(
            pick_revision(&history, "012"),
            None,
            "too short to be unambiguous"
        );
        assert_eq!(
            pick_revision(&history, "fffffff"),
            None,
            "failed syncs are no target"
        );
    }
}
