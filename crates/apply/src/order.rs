//! The order a sync applies objects in: phase (hooks before and after the main sync), then wave
//! (`capstan.dev/sync-wave`, an integer, default 0), then kind rank (Helm's install order: namespaces and
//! CRDs before what needs them, workloads after their config). Pure and deterministic: ties keep the
//! order objects were rendered in.

use capstan_core::annotation;
use capstan_plan::hooks::{self, HookError, Phase};
use kube::api::DynamicObject;
use serde::Serialize;

pub const WAVE_ANNOTATION: &str = "capstan.dev/sync-wave";
/// Helm's hook weight orders hooks like a wave.
const HELM_HOOK_WEIGHT: &str = "helm.sh/hook-weight";

/// Why an object's ordering annotations cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OrderError {
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error("annotation {annotation}: {value:?} is not an integer")]
    Wave {
        annotation: &'static str,
        value: String,
    },
}

/// Namespaces and CRDs that are not hooks themselves go before everything, hooks included: hooks and
/// the objects after them may live in those namespaces or be of those kinds.
fn is_prerequisite(object: &DynamicObject) -> bool {
    let Some(types) = &object.types else {
        return false;
    };
    (types.api_version == "v1" && types.kind == "Namespace")
        || (types.api_version.starts_with("apiextensions.k8s.io/")
            && types.kind == "CustomResourceDefinition")
}

pub fn wave(object: &DynamicObject) -> Result<i64, OrderError> {
    let (key, value) = match annotation(object, WAVE_ANNOTATION) {
        Some(value) => (WAVE_ANNOTATION, value),
        None => match annotation(object, HELM_HOOK_WEIGHT) {
            Some(value) => (HELM_HOOK_WEIGHT, value),
            None => return Ok(0),
        },
    };
    value.parse().map_err(|_| OrderError::Wave {
        annotation: key,
        value: value.to_string(),
    })
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
    let phase = match hooks::phase(object)? {
        Phase::Sync if is_prerequisite(object) => Phase::Prerequisites,
        phase => phase,
    };
    Ok(Slot {
        phase,
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
        let api_version = match kind {
            "CustomResourceDefinition" => "apiextensions.k8s.io/v1",
            "Deployment" => "apps/v1",
            "Job" => "batch/v1",
            "Widget" => "example.com/v1",
            _ => "v1",
        };
        serde_json::from_value(json!({
            "apiVersion": api_version, "kind": kind,
            "metadata": {"name": kind.to_lowercase(), "annotations": annotations}
        }))
        .expect("object")
    }

    #[test]
    fn phases_then_waves_then_kinds() {
        let objects = [
            object("Deployment", json!({})),
            object("Job", json!({hooks::HOOK_ANNOTATION: "PostSync"})),
            object("ConfigMap", json!({WAVE_ANNOTATION: "-1"})),
            object("Widget", json!({})),
            object("Namespace", json!({})),
            object("Job", json!({hooks::HOOK_ANNOTATION: "PreSync"})),
            object("Service", json!({WAVE_ANNOTATION: "5"})),
            object("CustomResourceDefinition", json!({})),
        ];
        let slots: Vec<Slot> = objects.iter().map(|o| slot(o).expect("slot")).collect();
        let order: Vec<usize> = steps(&slots)
            .into_iter()
            .flat_map(|(_, members)| members)
            .collect();
        // Prerequisites: Namespace, CRD; PreSync Job; wave -1 ConfigMap; wave 0: Deployment, Widget;
        // wave 5 Service; PostSync Job.
        assert_eq!(order, vec![4, 7, 5, 2, 0, 3, 6, 1]);
    }

    #[test]
    fn bad_annotations_are_named() {
        let err =
            slot(&object("Job", json!({hooks::HOOK_ANNOTATION: "Before"}))).expect_err("bad hook");
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
