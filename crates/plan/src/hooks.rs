//! Hooks: objects annotated `capstan.dev/hook` run in a phase around the main sync (PreSync before it,
//! PostSync after it, SyncFail only when it failed) and must complete (Jobs, Pods). They are re-created
//! on every sync (delete, then create: Helm's and Argo CD's `BeforeHookCreation`), and
//! `capstan.dev/hook-delete-policy` can delete them after they succeeded or failed.
//!
//! Helm chart hooks map onto these: `helm.sh/hook: pre-install,pre-upgrade` → PreSync,
//! `post-install,post-upgrade` → PostSync; `helm.sh/hook-weight` → sync wave;
//! `helm.sh/hook-delete-policy: hook-succeeded|hook-failed|before-hook-creation` → the same policies.

use std::fmt;

use capstan_core::annotation;
use kube::api::DynamicObject;
use serde::Serialize;

pub const HOOK_ANNOTATION: &str = "capstan.dev/hook";
pub const HOOK_DELETE_POLICY_ANNOTATION: &str = "capstan.dev/hook-delete-policy";
const HELM_HOOK: &str = "helm.sh/hook";
const HELM_HOOK_DELETE_POLICY: &str = "helm.sh/hook-delete-policy";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HookError {
    #[error(
        "annotation {HOOK_ANNOTATION}: {value:?} is not one of PreSync, Sync, PostSync, SyncFail"
    )]
    Phase { value: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Phase {
    /// Namespaces and CRDs of the app, before any hook (see capstan-apply's order).
    Prerequisites,
    PreSync,
    Sync,
    PostSync,
    /// Only run when the sync failed.
    SyncFail,
    /// Never applied (Helm hooks for helm's own verbs: test, delete, rollback).
    Skip,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

pub fn phase(object: &DynamicObject) -> Result<Phase, HookError> {
    if annotation(object, HOOK_ANNOTATION).is_none()
        && let Some(helm) = annotation(object, HELM_HOOK)
    {
        return Ok(helm_phase(helm));
    }
    match annotation(object, HOOK_ANNOTATION) {
        None | Some("Sync") => Ok(Phase::Sync),
        Some("PreSync") => Ok(Phase::PreSync),
        Some("PostSync") => Ok(Phase::PostSync),
        Some("SyncFail") => Ok(Phase::SyncFail),
        Some(other) => Err(HookError::Phase {
            value: other.to_string(),
        }),
    }
}

/// Helm hook names → phases. Hooks that only mean something to `helm` itself (`test`, `pre-delete`,
/// `post-delete`, `pre-rollback`, `post-rollback`) never run during a sync: [`Phase::Skip`].
fn helm_phase(value: &str) -> Phase {
    let names: Vec<&str> = value.split(',').map(str::trim).collect();
    if names
        .iter()
        .any(|n| *n == "pre-install" || *n == "pre-upgrade")
    {
        Phase::PreSync
    } else if names
        .iter()
        .any(|n| *n == "post-install" || *n == "post-upgrade")
    {
        Phase::PostSync
    } else {
        Phase::Skip
    }
}

/// Whether an object is a hook (any phase other than Sync and Prerequisites).
pub fn is_hook(object: &DynamicObject) -> bool {
    matches!(
        phase(object),
        Ok(Phase::PreSync | Phase::PostSync | Phase::SyncFail | Phase::Skip)
    )
}

/// When a hook is deleted after it ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeletePolicy {
    pub on_success: bool,
    pub on_failure: bool,
}

pub fn delete_policy(object: &DynamicObject) -> DeletePolicy {
    let value = annotation(object, HOOK_DELETE_POLICY_ANNOTATION)
        .or_else(|| annotation(object, HELM_HOOK_DELETE_POLICY))
        .unwrap_or_default()
        .to_ascii_lowercase()
        .replace('-', "");
    DeletePolicy {
        on_success: value.split(',').any(|p| p.trim() == "hooksucceeded"),
        on_failure: value.split(',').any(|p| p.trim() == "hookfailed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(annotations: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "annotations": annotations}}))
        .expect("object")
    }

    #[test]
    fn capstan_hooks_and_helm_hooks_map_to_phases() {
        let phase_of = |a| phase(&object(a)).expect("phase");
        assert_eq!(phase_of(json!({})), Phase::Sync);
        assert_eq!(
            phase_of(json!({HOOK_ANNOTATION: "PreSync"})),
            Phase::PreSync
        );
        assert_eq!(
            phase_of(json!({HELM_HOOK: "pre-install,pre-upgrade"})),
            Phase::PreSync
        );
        assert_eq!(
            phase_of(json!({HELM_HOOK: "post-upgrade"})),
            Phase::PostSync
        );
        for helm_only in ["test", "pre-delete", "post-delete", "pre-rollback"] {
            assert_eq!(
                phase_of(json!({HELM_HOOK: helm_only})),
                Phase::Skip,
                "{helm_only}"
            );
        }
        // Capstan's own annotation wins over Helm's.
        assert_eq!(
            phase_of(json!({HOOK_ANNOTATION: "PostSync", HELM_HOOK: "pre-install"})),
            Phase::PostSync
        );
        let err = phase(&object(json!({HOOK_ANNOTATION: "Later"}))).expect_err("bad");
        assert!(err.to_string().contains("Later"));
    }

    #[test]
    fn delete_policies_from_either_annotation() {
        let policy = delete_policy(&object(json!({
            HELM_HOOK_DELETE_POLICY: "before-hook-creation,hook-succeeded"})));
        assert_eq!(
            policy,
            DeletePolicy {
                on_success: true,
                on_failure: false
            }
        );
        let policy = delete_policy(&object(
            json!({HOOK_DELETE_POLICY_ANNOTATION: "HookFailed"}),
        ));
        assert_eq!(
            policy,
            DeletePolicy {
                on_success: false,
                on_failure: true
            }
        );
    }
}
