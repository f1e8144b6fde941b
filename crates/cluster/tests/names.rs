//! Names and namespaces in request URLs, against the real API server: hostile ones are refused by the
//! verbs before any request is sent; valid ones with reserved characters (RBAC names) are escaped into
//! one path segment.

use std::sync::{Arc, Mutex};

use capstan_cluster::{
    Cluster, ClusterError, ConnectOptions, Deleted, Ownership, PropagationPolicy,
};
use capstan_core::ObjectRef;
use capstan_test_support::{TestNamespace, kubeconfig};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DynamicObject, ObjectMeta};
use serde_json::json;

/// A connection whose every request is counted.
async fn counted() -> (Cluster, Arc<Mutex<Vec<&'static str>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&sent);
    let options = ConnectOptions {
        kubeconfig: Some(kubeconfig().to_path_buf()),
        observe_request: Some(Arc::new(move |verb| record.lock().expect("log").push(verb))),
        ..Default::default()
    };
    (Cluster::connect(&options).await.expect("connect"), sent)
}

fn config_map(namespace: &str, name: &str) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace}, "data": {"k": "v"}}))
    .expect("object")
}

fn field_of(error: &ClusterError) -> &'static str {
    match error {
        ClusterError::InvalidName { field, .. } => field,
        other => panic!("expected an invalid name, got {other:?}"),
    }
}

#[tokio::test]
async fn hostile_names_and_namespaces_are_refused_before_a_request() {
    let (cluster, sent) = counted().await;
    let ns = TestNamespace::create(&cluster.client(), "cluster-names").await;
    // Discovery of ConfigMaps is cached first: what follows must send nothing at all.
    let good = ObjectRef::from_object(&config_map(ns.name(), "good")).expect("ref");
    assert!(cluster.get(&good).await.expect("get").is_none());
    let baseline = sent.lock().expect("log").len();

    let long = "a".repeat(254);
    for name in [
        "a?fieldManager=x&force=true#",
        "a/b",
        "..",
        "a%2Fb",
        "A",
        &long,
    ] {
        let hostile = config_map(ns.name(), name);
        let reference = ObjectRef::from_object(&hostile).expect("ref");
        for dry_run in [true, false] {
            let error = cluster
                .apply(&hostile, Ownership::Force, dry_run)
                .await
                .expect_err(name);
            assert_eq!(field_of(&error), "metadata.name", "{error}");
            assert!(error.to_string().contains("ConfigMap"), "{error}");
        }
        let error = cluster.get(&reference).await.expect_err(name);
        assert_eq!(field_of(&error), "metadata.name");
        let error = cluster
            .delete(&reference, PropagationPolicy::Background)
            .await
            .expect_err(name);
        assert_eq!(field_of(&error), "metadata.name");
        let error = cluster.config_map(ns.name(), name).await.expect_err(name);
        assert_eq!(field_of(&error), "metadata.name");
        let error = cluster
            .delete_config_map(ns.name(), name)
            .await
            .expect_err(name);
        assert_eq!(field_of(&error), "metadata.name");
        let replacement = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                resource_version: Some("1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let error = cluster
            .replace_config_map(ns.name(), &replacement)
            .await
            .expect_err(name);
        assert_eq!(field_of(&error), "metadata.name");
    }

    let hostile = config_map("x?y", "a");
    let error = cluster
        .apply(&hostile, Ownership::Force, true)
        .await
        .expect_err("namespace");
    assert_eq!(field_of(&error), "metadata.namespace", "{error}");
    let error = cluster
        .list(&good, Some("x?y"), None)
        .await
        .expect_err("list");
    assert_eq!(field_of(&error), "metadata.namespace");
    let error = cluster.config_map("x?y", "a").await.expect_err("namespace");
    assert_eq!(field_of(&error), "metadata.namespace");
    let error = cluster
        .list_config_maps("x?y", "a=b")
        .await
        .expect_err("namespace");
    assert_eq!(field_of(&error), "metadata.namespace");
    let error = cluster
        .create_config_map("x?y", &ConfigMap::default())
        .await
        .expect_err("namespace");
    assert_eq!(field_of(&error), "metadata.namespace");
    let error = cluster
        .ensure_namespace("x?y")
        .await
        .expect_err("namespace");
    assert_eq!(field_of(&error), "metadata.name");

    let mut hostile = config_map(ns.name(), "a");
    hostile.types.as_mut().expect("types").api_version = "v1?x=y#".into();
    let error = cluster
        .apply(&hostile, Ownership::Force, true)
        .await
        .expect_err("apiVersion");
    assert_eq!(field_of(&error), "apiVersion", "{error}");

    assert_eq!(
        sent.lock().expect("log")[baseline..],
        [] as [&str; 0],
        "no request was sent"
    );
    assert!(cluster.get(&good).await.expect("get").is_none());
}

/// RBAC names are path segments, not DNS names: `:`, spaces and non-ASCII are valid there. They are
/// percent-encoded into one segment, and the server decodes them back.
#[tokio::test]
async fn names_with_reserved_characters_are_escaped_into_one_path_segment() {
    let (cluster, _) = counted().await;
    let ns = TestNamespace::create(&cluster.client(), "cluster-escape").await;
    let name = "system:viewer a+b@é";
    let role: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": name, "namespace": ns.name()},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}))
    .expect("role");
    let reference = ObjectRef::from_object(&role).expect("ref");

    let preview = cluster
        .apply(&role, Ownership::Force, true)
        .await
        .expect("dry-run");
    assert_eq!(preview.metadata.name.as_deref(), Some(name));
    assert!(cluster.get(&reference).await.expect("get").is_none());

    cluster
        .apply(&role, Ownership::Force, false)
        .await
        .expect("apply");
    let live = cluster.get(&reference).await.expect("get").expect("exists");
    assert_eq!(live.metadata.name.as_deref(), Some(name));
    assert_eq!(
        cluster
            .delete(&reference, PropagationPolicy::Background)
            .await
            .expect("delete"),
        Deleted::Requested
    );
    assert!(cluster.get(&reference).await.expect("get").is_none());
}
