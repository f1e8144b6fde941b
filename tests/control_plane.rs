//! The real control plane from `testenv/` behaves like a cluster: server-side apply, the scheduler,
//! kwok nodes running pods, the deployment controller and the garbage collector.

use std::collections::BTreeSet;
use std::time::Duration;

use capstan_cluster::FIELD_MANAGER;
use capstan_test_support::{TestNamespace, client, eventually};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn condition_true(conditions: Option<&[impl Condition]>, kind: &str) -> bool {
    conditions
        .unwrap_or_default()
        .iter()
        .any(|c| c.kind() == kind && c.status() == "True")
}

trait Condition {
    fn kind(&self) -> &str;
    fn status(&self) -> &str;
}
impl Condition for k8s_openapi::api::apps::v1::DeploymentCondition {
    fn kind(&self) -> &str {
        &self.type_
    }
    fn status(&self) -> &str {
        &self.status
    }
}
impl Condition for k8s_openapi::api::core::v1::NodeCondition {
    fn kind(&self) -> &str {
        &self.type_
    }
    fn status(&self) -> &str {
        &self.status
    }
}

#[tokio::test]
async fn at_least_two_kwok_nodes_are_ready() {
    let nodes = Api::<Node>::all(client().await)
        .list(&ListParams::default().labels("type=kwok"))
        .await
        .expect("list nodes");
    let ready: Vec<String> = nodes
        .items
        .iter()
        .filter(|n| {
            condition_true(
                n.status.as_ref().and_then(|s| s.conditions.as_deref()),
                "Ready",
            )
        })
        .map(|n| n.name_any())
        .collect();
    assert!(ready.len() >= 2, "Ready kwok nodes: {ready:?}");
}

#[tokio::test]
async fn applied_deployment_runs_on_kwok_and_is_garbage_collected() {
    let client = client().await;
    let namespace = TestNamespace::create(&client, "deploy-gc").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace.name());
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), namespace.name());
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace.name());

    let manifest = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "web" },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": { "app": "web" } },
            "template": {
                "metadata": { "labels": { "app": "web" } },
                "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] }
            }
        }
    });
    let applied = deployments
        .patch(
            "web",
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&manifest),
        )
        .await
        .expect("server-side apply");
    let managers: Vec<_> = applied
        .managed_fields()
        .iter()
        .map(|m| (m.manager.as_deref(), m.operation.as_deref()))
        .collect();
    assert!(
        managers.contains(&(Some(FIELD_MANAGER), Some("Apply"))),
        "managedFields: {managers:?}"
    );

    eventually(
        WAIT,
        "Deployment web to be Available with 2 ready replicas",
        || {
            let deployments = deployments.clone();
            async move {
                let d = deployments.get("web").await.map_err(|e| e.to_string())?;
                let status = d.status.unwrap_or_default();
                let available = condition_true(status.conditions.as_deref(), "Available");
                if available && status.available_replicas == Some(2) {
                    Ok(())
                } else {
                    Err(format!("{status:?}"))
                }
            }
        },
    )
    .await;

    let running = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list pods");
    assert_eq!(running.items.len(), 2, "pods: {:?}", names(&running.items));
    for pod in &running.items {
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        assert!(
            node.is_some_and(|n| n.starts_with("kwok-node-")),
            "pod {} scheduled on {node:?}",
            pod.name_any()
        );
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        assert_eq!(phase, Some("Running"), "pod {}", pod.name_any());
    }

    let owned_sets = replica_sets
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list replicasets");
    assert_eq!(owned_sets.items.len(), 1, "one ReplicaSet for one revision");
    let owner = &owned_sets.items[0].owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Deployment", "web")
    );

    deployments
        .delete("web", &DeleteParams::background())
        .await
        .expect("delete deployment");

    eventually(
        WAIT,
        "the garbage collector to remove ReplicaSet and pods",
        || {
            let (replica_sets, pods) = (replica_sets.clone(), pods.clone());
            async move {
                let sets = replica_sets
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let left = pods
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                if sets.items.is_empty() && left.items.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "replicasets {:?}, pods {:?}",
                        names(&sets.items),
                        names(&left.items)
                    ))
                }
            }
        },
    )
    .await;
}

fn names<K: ResourceExt>(objects: &[K]) -> BTreeSet<String> {
    objects.iter().map(|o| o.name_any()).collect()
}
