//! Reading health from a cluster: one object's verdict ([`HealthRules::assess`]), explained by its
//! pods' state when a workload is not Current. The reads go through [`HealthView`]
//! (`capstan_cluster::Cluster` implements it in that crate's adapter module), so the verdicts stay
//! pure and this is testable with a fake.

use std::future::Future;

use capstan_core::ObjectRef;
use capstan_core::api::ClusterError;
use kube::api::DynamicObject;

use crate::{Health, HealthRules, HealthStatus, workloads};

/// What reading health needs from the cluster.
pub trait HealthView {
    /// The live object, or `None` when it does not exist.
    fn read(
        &self,
        object: &ObjectRef,
    ) -> impl Future<Output = Result<Option<DynamicObject>, ClusterError>> + Send;
    /// The Pods matching a label selector, in `namespace` (`None`: every namespace).
    fn pods(
        &self,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> impl Future<Output = Result<Vec<DynamicObject>, ClusterError>> + Send;
}

/// Kinds whose unhealthy verdict is explained better by their pods' state.
const POD_OWNERS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
];

/// The health of `object` now: NotFound when it does not exist; a workload that is not Current
/// carries its pods' reasons ([`workloads::with_pod_reasons`]).
pub async fn observe<V: HealthView + ?Sized>(
    view: &V,
    object: &ObjectRef,
    rules: &HealthRules,
) -> Result<Health, ClusterError> {
    let Some(live) = view.read(object).await? else {
        return Ok(Health::not_found());
    };
    let health = rules.assess(&live);
    if health.status != HealthStatus::Current
        && POD_OWNERS.contains(&object.kind.as_str())
        && let Some(selector) = workloads::pod_selector(&live)
    {
        let pods = view.pods(object.namespace.as_deref(), &selector).await?;
        return Ok(workloads::with_pod_reasons(health, &pods));
    }
    Ok(health)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use serde_json::{Value, json};

    use super::*;

    /// Live objects by name, Pods with labels, and the Pod lists asked for.
    #[derive(Default)]
    struct FakeView {
        objects: BTreeMap<String, DynamicObject>,
        pods: Vec<DynamicObject>,
        listed: Mutex<Vec<(Option<String>, String)>>,
    }

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).expect("object")
    }

    impl HealthView for FakeView {
        async fn read(&self, object: &ObjectRef) -> Result<Option<DynamicObject>, ClusterError> {
            Ok(self.objects.get(&object.name).cloned())
        }

        async fn pods(
            &self,
            namespace: Option<&str>,
            label_selector: &str,
        ) -> Result<Vec<DynamicObject>, ClusterError> {
            self.listed
                .lock()
                .expect("listed")
                .push((namespace.map(String::from), label_selector.to_string()));
            Ok(self
                .pods
                .iter()
                .filter(|pod| {
                    namespace.is_none_or(|ns| pod.metadata.namespace.as_deref() == Some(ns))
                })
                .filter(|pod| {
                    let labels = pod.metadata.labels.clone().unwrap_or_default();
                    label_selector.split(',').all(|term| {
                        let (key, value) = term.split_once('=').expect("k=v selectors only");
                        labels.get(key).map(String::as_str) == Some(value)
                    })
                })
                .cloned()
                .collect())
        }
    }

    fn deployment(available: i64) -> DynamicObject {
        object(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "generation": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                       "readyReplicas": available, "availableReplicas": available,
                       "conditions": [{"type": "Available",
                                       "status": if available > 0 { "True" } else { "False" }}]}
        }))
    }

    fn pod(namespace: &str, name: &str, app: &str, status: Value) -> DynamicObject {
        object(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
            "status": status
        }))
    }

    fn web() -> ObjectRef {
        ObjectRef::from_object(&deployment(0)).expect("reference")
    }

    #[tokio::test]
    async fn a_missing_object_is_not_found() {
        let view = FakeView::default();
        let health = observe(&view, &web(), &HealthRules::default())
            .await
            .expect("observe");
        assert_eq!(health, Health::not_found());
    }

    #[tokio::test]
    async fn a_stuck_workload_is_explained_by_its_own_pods() {
        let mut view = FakeView::default();
        view.objects.insert("web".into(), deployment(0));
        let unschedulable = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled",
            "status": "False", "reason": "Unschedulable", "message": "0/2 nodes are available"}]});
        let failed = json!({"phase": "Failed", "reason": "Evicted", "message": "evicted"});
        view.pods = vec![
            pod("elsewhere", "web-other", "web", failed.clone()),
            pod("shop", "db-0", "db", failed),
            pod("shop", "web-abc", "web", unschedulable),
        ];
        let health = observe(&view, &web(), &HealthRules::default())
            .await
            .expect("observe");
        assert_eq!(health.status, HealthStatus::InProgress);
        assert!(
            health
                .message
                .ends_with("; pod web-abc: Pod unschedulable: 0/2 nodes are available"),
            "{}",
            health.message
        );
        assert_eq!(
            *view.listed.lock().expect("listed"),
            vec![(Some("shop".to_string()), "app=web".to_string())]
        );
    }

    #[tokio::test]
    async fn a_current_workload_lists_no_pods() {
        let mut view = FakeView::default();
        view.objects.insert("web".into(), deployment(1));
        let health = observe(&view, &web(), &HealthRules::default())
            .await
            .expect("observe");
        assert_eq!(health.status, HealthStatus::Current, "{}", health.message);
        assert!(view.listed.lock().expect("listed").is_empty());
    }
}
