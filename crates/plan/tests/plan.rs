//! Plans against the real API server: create / update / unchanged, drift attributed to the manager
//! that caused it, masked Secrets, CRDs with their custom resources, prune decisions, and the plan hash.

use capstan_cluster::{Cluster, Ownership};
use capstan_core::ObjectRef;
use capstan_core::ownership::AppId;
use capstan_inventory::Inventory;
use capstan_plan::{Action, DesiredObject, Plan, PlanError, PlanOptions, PruneDecision, plan};
use capstan_test_support::{TestNamespace, cluster, kubectl};
use kube::api::DynamicObject;
use serde_json::json;

fn desired(value: serde_json::Value) -> DesiredObject {
    DesiredObject {
        object: serde_json::from_value(value).expect("object"),
        provenance: "app/objects.yaml".into(),
    }
}

fn config_map(name: &str, color: &str) -> DesiredObject {
    desired(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"color": color}
    }))
}

async fn apply_all(cluster: &Cluster, plan: &Plan) {
    for change in &plan.changes {
        cluster
            .apply(&change.desired, Ownership::Force, false)
            .await
            .expect("apply");
    }
}

#[tokio::test]
async fn create_then_unchanged_then_update_with_diff() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster.client(), "plan-basic").await;
    let app = AppId::new(ns.name(), "shop");
    let none = Inventory::new();

    let first = plan(
        &cluster,
        &app,
        ns.name(),
        vec![config_map("settings", "blue")],
        &none,
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    assert_eq!(first.changes[0].action, Action::Create);
    assert_eq!(
        first.changes[0].object.namespace.as_deref(),
        Some(ns.name()),
        "namespace defaulted"
    );
    assert!(
        first.changes[0].diff.contains("+  color: blue"),
        "{}",
        first.changes[0].diff
    );
    apply_all(&cluster, &first).await;

    let again = plan(
        &cluster,
        &app,
        ns.name(),
        vec![config_map("settings", "blue")],
        &none,
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    assert_eq!(again.changes[0].action, Action::Unchanged);
    assert!(!again.has_changes(true));
    assert_eq!(
        again.hash,
        plan(
            &cluster,
            &app,
            ns.name(),
            vec![config_map("settings", "blue")],
            &none,
            &PlanOptions::default()
        )
        .await
        .expect("plan")
        .hash,
        "same inputs, same cluster: same hash"
    );

    let changed = plan(
        &cluster,
        &app,
        ns.name(),
        vec![config_map("settings", "green")],
        &none,
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    let change = &changed.changes[0];
    assert_eq!(change.action, Action::Update);
    assert!(
        change.diff.contains("-  color: blue") && change.diff.contains("+  color: green"),
        "{}",
        change.diff
    );
    assert_ne!(changed.hash, again.hash);
}

#[tokio::test]
async fn drift_names_the_manager_that_changed_the_field() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster.client(), "plan-drift").await;
    let app = AppId::new(ns.name(), "web");
    let deployment = || {
        desired(json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}
        }))
    };
    let first = plan(
        &cluster,
        &app,
        ns.name(),
        vec![deployment()],
        &Inventory::new(),
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    apply_all(&cluster, &first).await;
    let before = plan(
        &cluster,
        &app,
        ns.name(),
        vec![deployment()],
        &Inventory::new(),
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    assert_eq!(
        before.changes[0].action,
        Action::Unchanged,
        "{}",
        before.changes[0].diff
    );

    let status = kubectl()
        .args(["-n", ns.name(), "scale", "deployment/web", "--replicas=4"])
        .status()
        .expect("kubectl scale");
    assert!(status.success());

    let drifted = plan(
        &cluster,
        &app,
        ns.name(),
        vec![deployment()],
        &Inventory::new(),
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    let change = &drifted.changes[0];
    assert_eq!(change.action, Action::Update);
    assert!(
        change.diff.contains("-  replicas: 4") && change.diff.contains("+  replicas: 1"),
        "{}",
        change.diff
    );
    let replicas = change
        .drift
        .iter()
        .find(|d| d.path == ".spec.replicas")
        .unwrap_or_else(|| panic!("replicas drift in {:?}", change.drift));
    assert_eq!(
        replicas.managers,
        vec!["kubectl".to_string()],
        "{:?}",
        change.drift
    );
    assert_ne!(
        drifted.hash, before.hash,
        "a live change invalidates the plan"
    );
}

#[tokio::test]
async fn secret_values_never_appear_in_the_plan() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster.client(), "plan-secret").await;
    let app = AppId::new(ns.name(), "db");
    let secret = |password: &str| {
        desired(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "stringData": {"user": "admin"}, "data": {"password": password}
        }))
    };
    let first = plan(
        &cluster,
        &app,
        ns.name(),
        vec![secret("aHVudGVyMg==")],
        &Inventory::new(),
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    apply_all(&cluster, &first).await;
    let changed = plan(
        &cluster,
        &app,
        ns.name(),
        vec![secret("c3dvcmRmaXNo")],
        &Inventory::new(),
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    let change = &changed.changes[0];
    assert_eq!(change.action, Action::Update);
    let printed = format!(
        "{}{}{}",
        first.changes[0].diff,
        change.diff,
        serde_json::to_string(&changed).expect("json")
    );
    for secret in [
        "aHVudGVyMg==",
        "c3dvcmRmaXNo",
        "YWRtaW4=",
        "hunter2",
        "swordfish",
    ] {
        assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
    }
    assert!(
        change.diff.contains("password: '*** (before)'")
            || change.diff.contains("password: \"*** (before)\""),
        "{}",
        change.diff
    );
}

#[tokio::test]
async fn custom_resources_are_planned_after_their_crd_in_the_same_set() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster.client(), "plan-crd").await;
    let app = AppId::new(ns.name(), "crd");
    let group = format!("{}.plan.capstan.dev", ns.name());
    let crd = desired(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                   "x-kubernetes-preserve-unknown-fields": true}}}]}
    }));
    let widget = desired(json!({
        "apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 3}
    }));
    let planned = plan(
        &cluster,
        &app,
        ns.name(),
        vec![crd.clone(), widget.clone()],
        &Inventory::new(),
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    assert_eq!(planned.changes[0].action, Action::Create);
    assert!(planned.changes[0].not_dry_run.is_none());
    assert_eq!(planned.changes[1].action, Action::Create);
    assert_eq!(
        planned.changes[1].not_dry_run.as_deref(),
        Some("its CustomResourceDefinition is created by this sync")
    );
    assert_eq!(
        planned.changes[1].object.namespace.as_deref(),
        Some(ns.name()),
        "scope from the CRD"
    );

    // Without its CRD the kind is an error naming the object and where it came from.
    let err = plan(
        &cluster,
        &app,
        ns.name(),
        vec![widget],
        &Inventory::new(),
        &PlanOptions::default(),
    )
    .await
    .expect_err("unknown kind");
    assert!(matches!(err, PlanError::UnknownKind { .. }), "{err}");
    assert!(
        err.to_string().contains("app/objects.yaml") && err.to_string().contains("Widget"),
        "{err}"
    );
    let crd_ref = ObjectRef::from_object(&planned.changes[0].desired).expect("ref");
    cluster
        .delete(&crd_ref, capstan_cluster::PropagationPolicy::Background)
        .await
        .expect("cleanup crd");
}

#[tokio::test]
async fn prune_candidates_respect_ownership_and_opt_out() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster.client(), "plan-prune").await;
    let app = AppId::new(ns.name(), "shop");
    let ours = plan(
        &cluster,
        &app,
        ns.name(),
        vec![config_map("ours", "a"), config_map("kept", "b")],
        &Inventory::new(),
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    apply_all(&cluster, &ours).await;
    let mut kept = ours.changes[1].desired.clone();
    kept.metadata
        .annotations
        .get_or_insert_default()
        .insert("capstan.dev/prune".into(), "disabled".into());
    cluster
        .apply(&kept, Ownership::Force, false)
        .await
        .expect("annotate");

    // A same-named object created by someone else, that a stale inventory lists.
    let foreign: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "foreign", "namespace": ns.name()}, "data": {}
    }))
    .expect("object");
    cluster
        .apply(&foreign, Ownership::Force, false)
        .await
        .expect("foreign");

    let mut previous = ours.desired_inventory();
    previous.insert(ObjectRef::from_object(&foreign).expect("ref"));
    let mut gone = ObjectRef::from_object(&foreign).expect("ref");
    gone.name = "deleted-meanwhile".into();
    previous.insert(gone);

    let planned = plan(
        &cluster,
        &app,
        ns.name(),
        vec![],
        &previous,
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    let decision = |name: &str| {
        planned
            .prune
            .iter()
            .find(|p| p.object.name == name)
            .map(|p| p.decision)
    };
    assert_eq!(decision("ours"), Some(PruneDecision::Delete));
    assert_eq!(decision("kept"), Some(PruneDecision::Disabled));
    assert_eq!(decision("foreign"), Some(PruneDecision::NotOwned));
    assert_eq!(decision("deleted-meanwhile"), Some(PruneDecision::Gone));
    assert_eq!(planned.prunes().count(), 1);
}

#[tokio::test]
async fn many_objects_of_a_kind_are_planned_from_one_list() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster.client(), "plan-many").await;
    let app = AppId::new(ns.name(), "bulk");
    let objects = |color: &str| -> Vec<DesiredObject> {
        (0..12)
            .map(|i| config_map(&format!("cm-{i}"), if i == 3 { color } else { "blue" }))
            .collect()
    };
    let none = Inventory::new();
    let first = plan(
        &cluster,
        &app,
        ns.name(),
        objects("blue")[..6].to_vec(),
        &none,
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    apply_all(&cluster, &first).await;

    let planned = plan(
        &cluster,
        &app,
        ns.name(),
        objects("green"),
        &none,
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    let actions: Vec<Action> = planned.changes.iter().map(|c| c.action).collect();
    let mut expected = vec![Action::Unchanged; 6];
    expected[3] = Action::Update;
    expected.extend(vec![Action::Create; 6]);
    assert_eq!(actions, expected);
}
