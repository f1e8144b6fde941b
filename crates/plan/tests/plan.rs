//! Plans against the real API server: create / update / unchanged, drift attributed to the manager
//! that caused it, masked Secrets, CRDs with their custom resources, prune decisions, the plan hash,
//! and ignoreDifferences (JSON pointers and field managers).

use capstan_cluster::{Cluster, ClusterError, Ownership};
use capstan_core::ObjectRef;
use capstan_core::ownership::AppId;
use capstan_inventory::Inventory;
use capstan_plan::{
    Action, DesiredObject, IgnoreDifference, Plan, PlanError, PlanOptions, PruneDecision,
    ServerView, plan,
};
use capstan_test_support::{TestNamespace, cluster, kubectl};
use kube::api::DynamicObject;
use serde_json::json;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::Stdio;
use std::sync::Mutex;

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
        planned.changes[1].not_dry_run.map(|r| r.as_str()),
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

fn web(image: &str) -> DesiredObject {
    desired(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": image}]}}}
    }))
}

fn ignoring(rules: Vec<IgnoreDifference>) -> PlanOptions {
    PlanOptions {
        ignore_differences: rules,
        ..Default::default()
    }
}

fn rule(group: &str, kind: &str, pointers: &[&str], managers: &[&str]) -> IgnoreDifference {
    IgnoreDifference {
        group: group.into(),
        kind: kind.into(),
        json_pointers: pointers.iter().map(|p| p.to_string()).collect(),
        managers: managers.iter().map(|m| m.to_string()).collect(),
        ..Default::default()
    }
}

/// Creates Deployment `web` (1 replica) through a plan, then scales it to 4 with `kubectl scale`.
async fn scaled_deployment(cluster: &Cluster, app: &AppId, namespace: &str) {
    let first = plan(
        cluster,
        app,
        namespace,
        vec![web("nginx:1.27")],
        &Inventory::new(),
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    apply_all(cluster, &first).await;
    let status = kubectl()
        .args(["-n", namespace, "scale", "deployment/web", "--replicas=4"])
        .status()
        .expect("kubectl scale");
    assert!(status.success());
}

async fn live_replicas(cluster: &Cluster, namespace: &str) -> serde_json::Value {
    let reference = ObjectRef {
        group: "apps".into(),
        version: "v1".into(),
        kind: "Deployment".into(),
        namespace: Some(namespace.into()),
        name: "web".into(),
    };
    let live = cluster.get(&reference).await.expect("get").expect("live");
    live.data["spec"]["replicas"].clone()
}

#[tokio::test]
async fn an_ignored_pointer_is_neither_compared_nor_taken_back() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster.client(), "plan-ignore-ptr").await;
    let app = AppId::new(ns.name(), "web");
    scaled_deployment(&cluster, &app, ns.name()).await;
    let options = ignoring(vec![rule("apps", "Deployment", &["/spec/replicas"], &[])]);

    let planned = plan(
        &cluster,
        &app,
        ns.name(),
        vec![web("nginx:1.27")],
        &Inventory::new(),
        &options,
    )
    .await
    .expect("plan");
    let change = &planned.changes[0];
    assert_eq!(change.action, Action::Unchanged, "{}", change.diff);
    assert!(change.drift.is_empty(), "{:?}", change.drift);
    assert_eq!(change.ignored, vec!["/spec/replicas".to_string()]);
    assert!(!planned.has_changes(true));
    let json = serde_json::to_value(&planned).expect("json");
    assert_eq!(json["changes"][0]["ignored"], json!(["/spec/replicas"]));
    // Something else changes: the sync applies it and leaves replicas as scaled.
    let changed = plan(
        &cluster,
        &app,
        ns.name(),
        vec![web("nginx:1.28")],
        &Inventory::new(),
        &options,
    )
    .await
    .expect("plan");
    let change = &changed.changes[0];
    assert_eq!(change.action, Action::Update);
    assert!(
        change
            .diff
            .lines()
            .any(|l| l.starts_with('+') && l.contains("image: nginx:1.28"))
            && !change.diff.contains("replicas"),
        "{}",
        change.diff
    );
    assert!(change.drift.is_empty(), "{:?}", change.drift);
    assert_eq!(
        change.desired.data["spec"].get("replicas"),
        None,
        "not sent"
    );
    apply_all(&cluster, &changed).await;
    assert_eq!(live_replicas(&cluster, ns.name()).await, json!(4));
    let after = plan(
        &cluster,
        &app,
        ns.name(),
        vec![web("nginx:1.28")],
        &Inventory::new(),
        &options,
    )
    .await
    .expect("plan");
    assert_eq!(
        after.changes[0].action,
        Action::Unchanged,
        "{}",
        after.changes[0].diff
    );

    // Without the rule, Git takes replicas back.
    let unruled = plan(
        &cluster,
        &app,
        ns.name(),
        vec![web("nginx:1.28")],
        &Inventory::new(),
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    assert_eq!(unruled.changes[0].action, Action::Update);
    assert!(unruled.changes[0].ignored.is_empty());
    let json = serde_json::to_value(&unruled).expect("json");
    assert!(
        json["changes"][0].get("ignored").is_none(),
        "no rule, no new key: {json}"
    );
}

/// Server-side applies `object` as field manager `manager`, as another tool (an operator) would.
fn apply_as(manager: &str, object: serde_json::Value) {
    let mut child = kubectl()
        .args([
            "apply",
            "--server-side",
            "--force-conflicts",
            &format!("--field-manager={manager}"),
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kubectl apply");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(object.to_string().as_bytes())
        .expect("write");
    assert!(
        child.wait().expect("wait").success(),
        "kubectl apply as {manager}"
    );
}

#[tokio::test]
async fn fields_of_an_ignored_manager_are_left_to_it() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster.client(), "plan-ignore-mgr").await;
    let app = AppId::new(ns.name(), "shop");
    let settings = |size: &str| {
        desired(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
            "data": {"color": "blue", "size": size}
        }))
    };
    let first = plan(
        &cluster,
        &app,
        ns.name(),
        vec![settings("s")],
        &Inventory::new(),
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    apply_all(&cluster, &first).await;
    // Another manager takes `color` over.
    apply_as(
        "colour-operator",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "settings", "namespace": ns.name()}, "data": {"color": "red"}}),
    );
    let plain = plan(
        &cluster,
        &app,
        ns.name(),
        vec![settings("s")],
        &Inventory::new(),
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    assert_eq!(plain.changes[0].action, Action::Update);
    assert_eq!(
        plain.changes[0].drift[0].managers,
        vec!["colour-operator".to_string()]
    );

    let options = ignoring(vec![rule("", "ConfigMap", &[], &["colour-operator"])]);
    let planned = plan(
        &cluster,
        &app,
        ns.name(),
        vec![settings("s")],
        &Inventory::new(),
        &options,
    )
    .await
    .expect("plan");
    let change = &planned.changes[0];
    assert_eq!(change.action, Action::Unchanged, "{}", change.diff);
    assert_eq!(change.ignored, vec!["/data/color".to_string()]);
    // Nothing else writes this ConfigMap, so the hash is a function of the inputs, whatever the
    // order of the rules.
    let reordered = ignoring(vec![
        rule("*", "Secret", &["/data"], &[]),
        rule("", "ConfigMap", &[], &["colour-operator"]),
    ]);
    let again = plan(
        &cluster,
        &app,
        ns.name(),
        vec![settings("s")],
        &Inventory::new(),
        &reordered,
    )
    .await
    .expect("plan");
    assert_eq!(again.hash, planned.hash);
    assert_ne!(planned.hash, plain.hash, "the rules change what is applied");

    let resized = plan(
        &cluster,
        &app,
        ns.name(),
        vec![settings("m")],
        &Inventory::new(),
        &options,
    )
    .await
    .expect("plan");
    let change = &resized.changes[0];
    assert_eq!(change.action, Action::Update);
    assert!(
        change.diff.contains("+  size: m") && !change.diff.contains("color"),
        "{}",
        change.diff
    );
    assert_eq!(change.desired.data["data"], json!({"size": "m"}));
    apply_all(&cluster, &resized).await;
    let live = cluster
        .get(&change.object)
        .await
        .expect("get")
        .expect("live");
    assert_eq!(live.data["data"], json!({"color": "red", "size": "m"}));
}

#[tokio::test]
async fn a_rule_for_another_object_does_not_hide_drift() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster.client(), "plan-ignore-other").await;
    let app = AppId::new(ns.name(), "web");
    scaled_deployment(&cluster, &app, ns.name()).await;
    let mut other_name = rule("apps", "Deployment", &["/spec/replicas"], &[]);
    other_name.name = Some("api".into());
    let mut other_namespace = rule("apps", "Deployment", &["/spec/replicas"], &[]);
    other_namespace.namespace = Some(format!("{}-elsewhere", ns.name()));
    let options = ignoring(vec![
        other_name,
        other_namespace,
        rule("apps", "StatefulSet", &["/spec/replicas"], &[]),
        rule("", "Deployment", &["/spec/replicas"], &[]),
        rule("apps", "Deployment", &[], &["kube-controller-manager"]),
    ]);
    let planned = plan(
        &cluster,
        &app,
        ns.name(),
        vec![web("nginx:1.27")],
        &Inventory::new(),
        &options,
    )
    .await
    .expect("plan");
    let change = &planned.changes[0];
    assert_eq!(change.action, Action::Update);
    assert!(
        change.diff.contains("-  replicas: 4") && change.diff.contains("+  replicas: 1"),
        "{}",
        change.diff
    );
    assert!(
        change
            .drift
            .iter()
            .any(|d| d.path == ".spec.replicas" && d.managers == ["kubectl"]),
        "{:?}",
        change.drift
    );
    assert_eq!(change.desired.data["spec"]["replicas"], json!(1));
    assert!(
        !change.ignored.contains(&"/spec/replicas".to_string()),
        "{:?}",
        change.ignored
    );
}

#[tokio::test]
async fn a_malformed_pointer_is_an_error_naming_the_rule() {
    let cluster = cluster().await;
    // Nothing is read or written: the rules are checked before any object.
    let mut bad = rule(
        "apps",
        "Deployment",
        &["/spec/replicas", "spec/paused"],
        &[],
    );
    bad.name = Some("web".into());
    let options = ignoring(vec![rule("", "ConfigMap", &["/data/a"], &[]), bad]);
    let err = plan(
        &cluster,
        &AppId::new("plan-ignore-bad", "web"),
        "plan-ignore-bad",
        vec![web("nginx:1.27")],
        &Inventory::new(),
        &options,
    )
    .await
    .expect_err("malformed pointer");
    assert!(matches!(err, PlanError::IgnoreRule(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "ignoreDifferences[1] (Deployment.apps web): jsonPointers[1]: \"spec/paused\" is not a \
         JSON pointer: it must start with '/', e.g. /spec/replicas"
    );
}

/// A [`ServerView`] over the real cluster that records the kinds it is asked to dry-run.
struct CountingView<'a> {
    cluster: &'a Cluster,
    dry_runs: Mutex<BTreeSet<String>>,
}

impl ServerView for CountingView<'_> {
    async fn namespaced(&self, object: &ObjectRef) -> Result<Option<bool>, ClusterError> {
        self.cluster.namespaced(object).await
    }
    async fn dry_run_apply(&self, desired: &DynamicObject) -> Result<DynamicObject, ClusterError> {
        let kind = desired.types.as_ref().map(|t| t.kind.clone());
        self.dry_runs
            .lock()
            .expect("dry-run log")
            .insert(kind.unwrap_or_default());
        self.cluster.dry_run_apply(desired).await
    }
    async fn live(&self, object: &ObjectRef) -> Result<Option<DynamicObject>, ClusterError> {
        self.cluster.live(object).await
    }
    async fn list(
        &self,
        kind: &ObjectRef,
        namespace: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<DynamicObject>>, ClusterError> {
        ServerView::list(self.cluster, kind, namespace, limit).await
    }
}

fn typical_app() -> Vec<DesiredObject> {
    let labels = json!({"app": "web", "tier": "front"});
    vec![
        config_map("settings", "blue"),
        desired(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"},
                       "stringData": {"token": "hunter2"}}),
        ),
        desired(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web"}})),
        desired(json!({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": "web", "labels": labels},
                       "spec": {"selector": {"app": "web"},
                                "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})),
        desired(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "web", "labels": labels},
                       "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                                "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"serviceAccountName": "web",
                                             "containers": [{"name": "web", "image": "nginx:1.27",
                                                 "args": ["--port", "8080"],
                                                 "ports": [{"containerPort": 8080}],
                                                 "env": [{"name": "MODE", "value": "fast"}],
                                                 "resources": {"requests": {"cpu": "100m"}}}],
                                             "volumes": [{"name": "tmp", "emptyDir": {}}]}}},
                       "status": {}})),
        desired(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                       "metadata": {"name": "reader"},
                       "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                                  "verbs": ["get", "list"]}]}),
        ),
        desired(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                       "metadata": {"name": "reader"},
                       "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                   "name": "reader"},
                       "subjects": [{"kind": "ServiceAccount", "name": "web"}]}),
        ),
    ]
}

/// Plans `typical_app()` twice, proving unchanged objects from the live object and dry-running
/// everything, and checks that both agree. Returns the actions by kind and the kinds the first plan
/// had dry-run (a kind may be dry-run again when a controller wrote in between).
async fn plan_both_ways(
    cluster: &Cluster,
    app: &AppId,
    namespace: &str,
) -> (Vec<(String, Action)>, BTreeSet<String>) {
    let view = CountingView {
        cluster,
        dry_runs: Mutex::default(),
    };
    let none = Inventory::new();
    let quick = plan(
        &view,
        app,
        namespace,
        typical_app(),
        &none,
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    let exhaustive = PlanOptions {
        dry_run_all: true,
        ..PlanOptions::default()
    };
    let full = plan(cluster, app, namespace, typical_app(), &none, &exhaustive)
        .await
        .expect("plan");
    let actions = |plan: &Plan| {
        plan.changes
            .iter()
            .map(|c| (c.object.kind.clone(), c.action))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        actions(&quick),
        actions(&full),
        "the proof agrees with the server"
    );
    let dry_run = view.dry_runs.into_inner().expect("dry-run log");
    // One object per kind here: each says whether it was proven or dry-run.
    for change in &quick.changes {
        let proven = change.not_dry_run.map(|r| r.as_str()) == Some(capstan_plan::PROVEN_UNCHANGED);
        assert_eq!(
            proven,
            !dry_run.contains(&change.object.kind),
            "{}: {:?}",
            change.object,
            change.not_dry_run
        );
    }
    assert!(
        full.changes.iter().all(|c| c.not_dry_run.is_none()),
        "dry_run_all dry-runs every object"
    );
    (actions(&quick), dry_run)
}

/// Plans `typical_app()` and applies every change, as a sync would.
async fn sync_typical_app(cluster: &Cluster, app: &AppId, namespace: &str) {
    let planned = plan(
        cluster,
        app,
        namespace,
        typical_app(),
        &Inventory::new(),
        &PlanOptions::default(),
    )
    .await
    .expect("plan");
    apply_all(cluster, &planned).await;
}

/// Every object of `typical_app()` is unchanged, and known to be without a single dry-run.
async fn assert_all_proven(cluster: &Cluster, app: &AppId, namespace: &str) {
    let (actions, dry_runs) = plan_both_ways(cluster, app, namespace).await;
    assert!(
        actions.iter().all(|(_, a)| *a == Action::Unchanged),
        "{actions:?}"
    );
    assert!(
        dry_runs.is_empty(),
        "proven unchanged, yet dry-run: {dry_runs:?}"
    );
}

#[tokio::test]
async fn unchanged_objects_are_proven_without_a_dry_run_and_changed_ones_never_are() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster.client(), "plan-proven").await;
    let app = AppId::new(ns.name(), "web");
    sync_typical_app(&cluster, &app, ns.name()).await;
    assert_all_proven(&cluster, &app, ns.name()).await;

    // A foreign label on a Service changes nothing Git declares: still proven.
    let foreign = kubectl()
        .args(["-n", ns.name(), "label", "service/web", "team=payments"])
        .status()
        .expect("kubectl label");
    assert!(foreign.success());
    assert_all_proven(&cluster, &app, ns.name()).await;

    // Each foreign write to a field Git declares: that object, and only it, is an update.
    // `kubectl edit` runs $KUBE_EDITOR on the object; sed plays the person at the keyboard.
    let writes: [(&str, &[&str]); 7] = [
        ("ConfigMap", &["edit", "configmap/settings"]),
        (
            "ConfigMap",
            &[
                "patch",
                "configmap/settings",
                "-p",
                r#"{"data":{"color":"red"}}"#,
            ],
        ),
        (
            "Secret",
            &[
                "patch",
                "secret/token",
                "-p",
                r#"{"stringData":{"token":"other"}}"#,
            ],
        ),
        ("Deployment", &["scale", "deployment/web", "--replicas=3"]),
        ("Service", &["label", "service/web", "tier-"]),
        (
            "Role",
            &[
                "patch",
                "role/reader",
                "--type=json",
                "-p",
                r#"[{"op":"add","path":"/rules/0/verbs/-","value":"watch"}]"#,
            ],
        ),
        ("Deployment", &["set", "env", "deployment/web", "MODE=slow"]),
    ];
    for (kind, args) in writes {
        let status = kubectl()
            .env("KUBE_EDITOR", "sed -i -e 's/color: blue/color: green/'")
            .args(["-n", ns.name()])
            .args(args)
            .status()
            .expect("kubectl");
        assert!(status.success(), "kubectl {args:?}");
        let (actions, dry_runs) = plan_both_ways(&cluster, &app, ns.name()).await;
        let updated: Vec<&str> = actions
            .iter()
            .filter(|(_, a)| *a != Action::Unchanged)
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(updated, vec![kind], "after kubectl {args:?}: {actions:?}");
        assert_eq!(
            dry_runs,
            BTreeSet::from([kind.to_string()]),
            "only the changed object is dry-run"
        );
        // Git wins again before the next write.
        sync_typical_app(&cluster, &app, ns.name()).await;
    }
}
