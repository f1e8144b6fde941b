//! The order a sync applies objects in: phase (hooks before and after the main sync), then wave
//! (`capstan.dev/sync-wave`, an integer, default 0), then kind rank (Helm's install order: namespaces and
//! CRDs before what needs them, workloads after their config). Pure and deterministic: ties keep the
//! order objects were rendered in.

use std::fmt;

use kube::api::DynamicObject;
use serde::Serialize;

pub const HOOK_ANNOTATION: &str = "capstan.dev/hook";
pub const WAVE_ANNOTATION: &str = "capstan.dev/sync-wave";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Phase {
    PreSync,
    Sync,
    PostSync,
    /// Only run when the sync failed.
    SyncFail,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why an object's ordering annotations cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OrderError {
    #[error(
        "annotation {HOOK_ANNOTATION}: {value:?} is not one of PreSync, Sync, PostSync, SyncFail"
    )]
    Hook { value: String },
    #[error("annotation {WAVE_ANNOTATION}: {value:?} is not an integer")]
    Wave { value: String },
}

fn annotation<'a>(object: &'a DynamicObject, key: &str) -> Option<&'a str> {
    object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(|v| v.trim())
}

pub fn phase(object: &DynamicObject) -> Result<Phase, OrderError> {
    match annotation(object, HOOK_ANNOTATION) {
        None | Some("Sync") => Ok(Phase::Sync),
        Some("PreSync") => Ok(Phase::PreSync),
        Some("PostSync") => Ok(Phase::PostSync),
        Some("SyncFail") => Ok(Phase::SyncFail),
        Some(other) => Err(OrderError::Hook {
            value: other.to_string(),
        }),
    }
}

pub fn wave(object: &DynamicObject) -> Result<i64, OrderError> {
    match annotation(object, WAVE_ANNOTATION) {
        None => Ok(0),
        Some(value) => value.parse().map_err(|_| OrderError::Wave {
            value: value.to_string(),
        }),
    }
}

/// Helm's install order (pkg/release/util/kind_sorter.go), condensed: what others depend on first.
const KIND_ORDER: &[&str] = &[
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// Position in [`KIND_ORDER`]; unknown kinds (custom resources) come after all of them.
pub fn kind_rank(kind: &str) -> usize {
    KIND_ORDER
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(KIND_ORDER.len())
}

/// Where an object goes in the sync: sorted by (phase, wave, kind rank).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Slot {
    pub phase: Phase,
    pub wave: i64,
    pub kind_rank: usize,
}

pub fn slot(object: &DynamicObject) -> Result<Slot, OrderError> {
    let kind = object.types.as_ref().map_or("", |t| t.kind.as_str());
    Ok(Slot {
        phase: phase(object)?,
        wave: wave(object)?,
        kind_rank: kind_rank(kind),
    })
}

/// Groups indices into `slots` by slot, in slot order; within a group, input order is kept.
pub fn steps(slots: &[Slot]) -> Vec<(Slot, Vec<usize>)> {
    let mut indexed: Vec<(Slot, usize)> = slots
        .iter()
        .enumerate()
        .map(|(i, slot)| (*slot, i))
        .collect();
    indexed.sort(); // stable on (slot, index): input order within a slot
    let mut steps: Vec<(Slot, Vec<usize>)> = Vec::new();
    for (slot, index) in indexed {
        match steps.last_mut() {
            Some((last, members)) if *last == slot => members.push(index),
            _ => steps.push((slot, vec![index])),
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(kind: &str, annotations: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": kind,
            "metadata": {"name": kind.to_lowercase(), "annotations": annotations}
        }))
        .expect("object")
    }

    #[test]
    fn phases_then_waves_then_kinds() {
        let objects = [
            object("Deployment", json!({})),
            object("Job", json!({HOOK_ANNOTATION: "PostSync"})),
            object("ConfigMap", json!({WAVE_ANNOTATION: "-1"})),
            object("Widget", json!({})),
            object("Namespace", json!({})),
            object("Job", json!({HOOK_ANNOTATION: "PreSync"})),
            object("Service", json!({WAVE_ANNOTATION: "5"})),
            object("CustomResourceDefinition", json!({})),
        ];
        let slots: Vec<Slot> = objects.iter().map(|o| slot(o).expect("slot")).collect();
        let order: Vec<usize> = steps(&slots)
            .into_iter()
            .flat_map(|(_, members)| members)
            .collect();
        // PreSync Job; wave -1 ConfigMap; wave 0: Namespace, CRD, Deployment, Widget; wave 5 Service;
        // PostSync Job.
        assert_eq!(order, vec![5, 2, 4, 7, 0, 3, 6, 1]);
    }

    #[test]
    fn bad_annotations_are_named() {
        let err = slot(&object("Job", json!({HOOK_ANNOTATION: "Before"}))).expect_err("bad hook");
        assert!(err.to_string().contains("capstan.dev/hook") && err.to_string().contains("Before"));
        let err = slot(&object("Job", json!({WAVE_ANNOTATION: "first"}))).expect_err("bad wave");
        assert!(err.to_string().contains("capstan.dev/sync-wave"));
    }

    #[test]
    fn same_slot_keeps_render_order() {
        let objects = [
            object("ConfigMap", json!({})),
            object("ConfigMap", json!({})),
        ];
        let slots: Vec<Slot> = objects.iter().map(|o| slot(o).expect("slot")).collect();
        assert_eq!(
            steps(&slots),
            vec![(
                Slot {
                    phase: Phase::Sync,
                    wave: 0,
                    kind_rank: kind_rank("ConfigMap")
                },
                vec![0, 1]
            )]
        );
    }
}
