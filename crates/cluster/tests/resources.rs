//! Object verbs against the real API server: discovery, dry-run, apply, field ownership, delete.

use capstan_cluster::{ClusterError, Deleted, Ownership, PropagationPolicy};
use capstan_core::ObjectRef;
use capstan_test_support::{TestNamespace, cluster};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::json;

fn object(value: serde_json::Value) -> DynamicObject {
    serde_json::from_value(value).expect("valid object")
}

fn config_map(namespace: &str, data: serde_json::Value) -> DynamicObject {
    object(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": namespace},
        "data": data
    }))
}

#[tokio::test]
async fn resolves_scope_and_names_unknown_kinds() {
    let cluster = cluster().await;
    let reference = |api_version: &str, kind: &str| {
        let (group, version) = capstan_core::split_api_version(api_version);
        ObjectRef {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            namespace: None,
            name: "x".into(),
        }
    };
    let deployment = cluster
        .resolve(&reference("apps/v1", "Deployment"))
        .await
        .expect("deployments");
    assert!(deployment.namespaced);
    assert_eq!(deployment.resource.plural, "deployments");
    let namespace = cluster
        .resolve(&reference("v1", "Namespace"))
        .await
        .expect("namespaces");
    assert!(!namespace.namespaced);

    let err = cluster
        .resolve(&reference("example.com/v1", "Widget"))
        .await
        .expect_err("no such kind");
    assert!(matches!(err, ClusterError::UnknownKind { .. }), "{err:?}");
    assert!(err.to_string().contains("Widget") && err.to_string().contains("example.com/v1"));
}

#[tokio::test]
async fn dry_run_stores_nothing_and_apply_creates() {
    let cluster = cluster().await;
    let namespace = TestNamespace::create(&cluster.client(), "cluster-apply").await;
    let desired = config_map(namespace.name(), json!({"color": "blue"}));
    let reference = ObjectRef::from_object(&desired).expect("ref");

    let preview = cluster
        .apply(&desired, Ownership::Force, true)
        .await
        .expect("dry-run");
    assert_eq!(preview.data["data"]["color"], "blue");
    assert!(
        cluster.get(&reference).await.expect("get").is_none(),
        "dry-run stored nothing"
    );

    cluster
        .apply(&desired, Ownership::Force, false)
        .await
        .expect("apply");
    let live = cluster.get(&reference).await.expect("get").expect("exists");
    let managers: Vec<_> = live
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, vec!["capstan".to_string()]);

    assert_eq!(
        cluster
            .delete(&reference, PropagationPolicy::Background)
            .await
            .expect("delete"),
        Deleted::Requested
    );
    assert_eq!(
        cluster
            .delete(&reference, PropagationPolicy::Background)
            .await
            .expect("delete again"),
        Deleted::AlreadyGone
    );
}

#[tokio::test]
async fn conflicts_name_the_other_manager_unless_forced() {
    let cluster = cluster().await;
    let namespace = TestNamespace::create(&cluster.client(), "cluster-conflict").await;
    let desired = config_map(namespace.name(), json!({"color": "blue"}));
    cluster
        .apply(&desired, Ownership::Force, false)
        .await
        .expect("apply");

    // Someone else takes the field over, the way `kubectl apply --server-side --force-conflicts` would.
    let api: Api<DynamicObject> = Api::namespaced_with(
        cluster.client(),
        namespace.name(),
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk("", "v1", "ConfigMap")),
    );
    api.patch(
        "settings",
        &PatchParams::apply("kubectl-edit").force(),
        &Patch::Apply(config_map(namespace.name(), json!({"color": "red"}))),
    )
    .await
    .expect("other manager");

    let err = cluster
        .apply(&desired, Ownership::Respect, false)
        .await
        .expect_err("conflict");
    let message = err.to_string();
    assert!(
        message.contains("kubectl-edit") && message.contains(".data.color"),
        "{message}"
    );
    assert!(matches!(err, ClusterError::Rejected { code: 409, .. }));

    let taken_back = cluster
        .apply(&desired, Ownership::Force, false)
        .await
        .expect("force");
    assert_eq!(taken_back.data["data"]["color"], "blue");
}

#[tokio::test]
async fn schema_errors_carry_the_servers_message_and_the_object() {
    let cluster = cluster().await;
    let namespace = TestNamespace::create(&cluster.client(), "cluster-schema").await;
    let bad = object(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "broken", "namespace": namespace.name()},
        "spec": {"replicas": "three", "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}
    }));
    let err = cluster
        .apply(&bad, Ownership::Force, true)
        .await
        .expect_err("schema error");
    let message = err.to_string();
    assert!(
        message.contains("Deployment.apps") && message.contains("broken"),
        "{message}"
    );
    assert!(message.contains("replicas"), "{message}");
}

#[tokio::test]
async fn bounded_list_reads_one_page_and_says_when_there_is_more() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster.client(), "cluster-list").await;
    for i in 0..5 {
        let object = object(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i}"), "namespace": ns.name()}
        }));
        cluster
            .apply(&object, Ownership::Force, false)
            .await
            .expect("apply");
    }
    let kind = ObjectRef {
        group: String::new(),
        version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: None,
        name: String::new(),
    };
    // 5 ConfigMaps, plus kube-root-ca.crt once the controller-manager has published it.
    let all = cluster
        .list_bounded(&kind, Some(ns.name()), 10)
        .await
        .expect("list")
        .expect("all fit");
    assert_eq!(
        all.iter()
            .filter(|o| o
                .metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("cm-")))
            .count(),
        5
    );
    assert!(
        all.iter()
            .all(|o| o.types.as_ref().is_some_and(|t| t.kind == "ConfigMap"))
    );
    let over = cluster
        .list_bounded(&kind, Some(ns.name()), 3)
        .await
        .expect("list");
    assert!(over.is_none(), "more than 3 exist: no partial answer");
}

/// The rate limit holds for every request of a connection and of the connections derived from it,
/// counted by the request observer: 1 request at once, then 20 per second.
#[tokio::test]
async fn the_rate_limit_spaces_requests_across_derived_connections() {
    let sent = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = std::sync::Arc::clone(&sent);
    let options = capstan_cluster::ConnectOptions {
        kubeconfig: Some(capstan_test_support::kubeconfig().to_path_buf()),
        rate_limit: Some(capstan_cluster::RateLimit {
            qps: 20.0,
            burst: 1,
        }),
        observe_request: Some(std::sync::Arc::new(move |_verb| {
            record.lock().expect("log").push(std::time::Instant::now());
        })),
        ..Default::default()
    };
    let limited = capstan_cluster::Cluster::connect(&options)
        .await
        .expect("connect");
    let derived = limited.impersonate("system:anonymous").expect("derived");
    let requests: Vec<_> = (0..10)
        .map(|i| {
            let cluster = if i % 2 == 0 { &limited } else { &derived }.clone();
            // Answers do not matter here; when each request was sent does.
            tokio::spawn(async move { cluster.server_version().await.is_ok() })
        })
        .collect();
    for request in requests {
        request.await.expect("request task");
    }
    let mut times = sent.lock().expect("log").clone();
    times.sort();
    assert_eq!(times.len(), 10, "every request was observed");
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap >= std::time::Duration::from_millis(45),
            "requests 50 ms apart at 20 per second, got {gap:?}"
        );
    }
}
