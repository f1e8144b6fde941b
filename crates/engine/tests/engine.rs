//! Whole syncs on the real control plane: inventory across syncs, prune, empty renders, a bad object
//! that stops everything, plan files, and deleting an app.

use capstan_core::ObjectRef;
use capstan_core::ownership::AppId;
use capstan_engine::{App, Engine, EngineError, Policy, SyncRequest};
use capstan_health::{HealthRules, HealthStatus};
use capstan_plan::DesiredObject;
use capstan_test_support::{TestNamespace, cluster, kubectl};
use serde_json::{Value, json};
use std::time::Duration;

fn desired(value: Value) -> DesiredObject {
    DesiredObject {
        object: serde_json::from_value(value).expect("object"),
        provenance: "app/manifests.yaml".into(),
    }
}

fn config_map(name: &str, value: &str) -> DesiredObject {
    desired(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
        "data": {"value": value}}),
    )
}

fn app(namespace: &str) -> App {
    App {
        id: AppId::new(namespace, "shop"),
        destination_namespace: namespace.to_string(),
        policy: Policy::default(),
    }
}

fn names(objects: &[ObjectRef]) -> Vec<&str> {
    let mut names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    names.sort();
    names
}

fn prune() -> SyncRequest {
    SyncRequest {
        prune: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn inventory_follows_syncs_and_prune_removes_what_left_git() {
    let engine = Engine::new(cluster().await);
    let ns = TestNamespace::create(&engine.cluster().client(), "engine-life").await;
    let app = app(ns.name());

    engine
        .sync(
            &app,
            vec![config_map("a", "1"), config_map("b", "1")],
            &SyncRequest::default(),
        )
        .await
        .expect("first sync");
    assert_eq!(
        names(&engine.inventory(&app).await.expect("inventory")),
        vec!["a", "b"]
    );

    // Without prune, b stays in the cluster and in the inventory: a later prune still knows it.
    let report = engine
        .sync(&app, vec![config_map("a", "2")], &SyncRequest::default())
        .await
        .expect("sync without prune");
    assert_eq!(report.plan.prunes().count(), 1);
    assert_eq!(
        names(&engine.inventory(&app).await.expect("inventory")),
        vec!["a", "b"]
    );

    let report = engine
        .sync(&app, vec![config_map("a", "2")], &prune())
        .await
        .expect("sync with prune");
    assert_eq!(report.changes.count(capstan_apply::Outcome::Pruned), 1);
    assert_eq!(
        names(&engine.inventory(&app).await.expect("inventory")),
        vec!["a"]
    );
    let b = report.plan.prune[0].object.clone();
    assert!(engine.cluster().get(&b).await.expect("get").is_none());
}

#[tokio::test]
async fn an_empty_render_never_prunes_unless_allowed() {
    let engine = Engine::new(cluster().await);
    let ns = TestNamespace::create(&engine.cluster().client(), "engine-empty").await;
    let mut app = app(ns.name());
    engine
        .sync(&app, vec![config_map("a", "1")], &SyncRequest::default())
        .await
        .expect("first sync");

    let err = engine
        .sync(&app, vec![], &prune())
        .await
        .expect_err("refused");
    assert!(
        matches!(err, EngineError::EmptyRender { count: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("--allow-empty"));
    assert_eq!(engine.inventory(&app).await.expect("inventory").len(), 1);

    app.policy.allow_empty = true;
    engine.sync(&app, vec![], &prune()).await.expect("allowed");
    assert!(engine.inventory(&app).await.expect("inventory").is_empty());
}

#[tokio::test]
async fn a_bad_object_stops_the_sync_before_anything_is_written() {
    let engine = Engine::new(cluster().await);
    let ns = TestNamespace::create(&engine.cluster().client(), "engine-bad").await;
    let app = app(ns.name());
    let first = engine
        .sync(&app, vec![config_map("old", "1")], &SyncRequest::default())
        .await
        .expect("first sync");
    let old = first.plan.changes[0].object.clone();

    let broken = desired(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "broken"},
        "spec": {"replicas": "many", "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}}}}));
    let err = engine
        .sync(&app, vec![config_map("new", "1"), broken], &prune())
        .await
        .expect_err("schema error");
    let message = err.to_string();
    assert!(
        message.contains("app/manifests.yaml") && message.contains("broken"),
        "{message}"
    );
    assert!(
        message.contains("replicas"),
        "the server's message: {message}"
    );

    let mut new = old.clone();
    new.name = "new".into();
    assert!(
        engine.cluster().get(&new).await.expect("get").is_none(),
        "nothing applied"
    );
    assert!(
        engine.cluster().get(&old).await.expect("get").is_some(),
        "nothing pruned"
    );
}

#[tokio::test]
async fn a_plan_file_is_refused_after_the_cluster_changed() {
    let engine = Engine::new(cluster().await);
    let ns = TestNamespace::create(&engine.cluster().client(), "engine-planfile").await;
    let app = app(ns.name());
    engine
        .sync(&app, vec![config_map("a", "1")], &SyncRequest::default())
        .await
        .expect("first sync");

    let reviewed = engine
        .plan(&app, vec![config_map("a", "2")])
        .await
        .expect("plan");
    let status = kubectl()
        .args(["-n", ns.name(), "annotate", "configmap/a", "touched=yes"])
        .status()
        .expect("kubectl annotate");
    assert!(status.success());

    let stale = SyncRequest {
        expected_plan: Some(reviewed.hash.clone()),
        ..Default::default()
    };
    let err = engine
        .sync(&app, vec![config_map("a", "2")], &stale)
        .await
        .expect_err("stale plan");
    assert!(matches!(err, EngineError::PlanChanged { .. }), "{err}");
    let live = engine
        .cluster()
        .get(&reviewed.changes[0].object)
        .await
        .expect("get")
        .expect("live");
    assert_eq!(live.data["data"]["value"], "1", "nothing applied");

    let fresh = engine
        .plan(&app, vec![config_map("a", "2")])
        .await
        .expect("plan");
    let current = SyncRequest {
        expected_plan: Some(fresh.hash),
        ..Default::default()
    };
    engine
        .sync(&app, vec![config_map("a", "2")], &current)
        .await
        .expect("fresh plan applies");
}

#[tokio::test]
async fn delete_removes_the_apps_objects_then_its_inventory() {
    let engine = Engine::new(cluster().await);
    let ns = TestNamespace::create(&engine.cluster().client(), "engine-delete").await;
    let app = app(ns.name());
    let report = engine
        .sync(
            &app,
            vec![config_map("a", "1"), config_map("b", "1")],
            &SyncRequest::default(),
        )
        .await
        .expect("sync");
    let changes = engine.delete(&app).await.expect("delete");
    assert_eq!(changes.count(capstan_apply::Outcome::Pruned), 2);
    for change in &report.plan.changes {
        assert!(
            engine
                .cluster()
                .get(&change.object)
                .await
                .expect("get")
                .is_none()
        );
    }
    assert!(engine.inventory(&app).await.expect("inventory").is_empty());
    let head = engine
        .cluster()
        .config_map(ns.name(), "capstan-inventory-shop")
        .await
        .expect("get");
    assert!(head.is_none(), "inventory removed");
}

fn deployment(name: &str, node_selector: Value) -> DesiredObject {
    desired(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"nodeSelector": node_selector,
                    "containers": [{"name": "web", "image": "nginx:1.27"}]}}}}),
    )
}

#[tokio::test]
async fn wait_reports_progress_until_a_deployment_is_available() {
    let engine = Engine::new(cluster().await);
    let ns = TestNamespace::create(&engine.cluster().client(), "engine-health").await;
    let app = app(ns.name());
    let report = engine
        .sync(
            &app,
            vec![deployment("web", json!({}))],
            &SyncRequest::default(),
        )
        .await
        .expect("sync");
    let written: Vec<ObjectRef> = report.changes.written().cloned().collect();
    let mut rounds = Vec::new();
    let summary = engine
        .wait_healthy(
            &written,
            &HealthRules::new(),
            Duration::from_secs(60),
            |s| rounds.push(s.to_string()),
        )
        .await
        .unwrap_or_else(|e| panic!("not healthy: {e}"));
    assert!(summary.is_healthy());
    assert!(!rounds.is_empty());
}

#[tokio::test]
async fn wait_fails_with_the_reason_when_pods_cannot_be_scheduled() {
    let engine = Engine::new(cluster().await);
    let ns = TestNamespace::create(&engine.cluster().client(), "engine-unschedulable").await;
    let app = app(ns.name());
    let report = engine
        .sync(
            &app,
            vec![deployment("stuck", json!({"disk": "does-not-exist"}))],
            &SyncRequest::default(),
        )
        .await
        .expect("sync");
    let written: Vec<ObjectRef> = report.changes.written().cloned().collect();
    let mut statuses = Vec::new();
    let err = engine
        .wait_healthy(&written, &HealthRules::new(), Duration::from_secs(5), |s| {
            statuses.push(s.status)
        })
        .await
        .expect_err("cannot become healthy");
    assert!(
        matches!(
            err,
            EngineError::Unhealthy {
                timed_out: Some(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(
        statuses.iter().all(|s| *s == HealthStatus::InProgress),
        "{statuses:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("stuck") && message.contains("Unschedulable")
            || message.contains("unschedulable"),
        "{message}"
    );
    assert!(
        message.contains("didn't match Pod's node affinity/selector"),
        "{message}"
    );
}

#[tokio::test]
async fn the_first_sync_creates_the_namespace_that_holds_the_inventory() {
    let engine = Engine::new(cluster().await);
    let ns = TestNamespace::create(&engine.cluster().client(), "engine-home").await;
    let home = format!("{}-apps", ns.name());
    let app = App {
        id: AppId::new(home.clone(), "shop"),
        destination_namespace: ns.name().to_string(),
        policy: Policy::default(),
    };
    engine
        .sync(&app, vec![config_map("a", "1")], &SyncRequest::default())
        .await
        .expect("sync");
    assert_eq!(
        names(&engine.inventory(&app).await.expect("inventory")),
        vec!["a"]
    );
    let namespace = ObjectRef {
        group: String::new(),
        version: "v1".into(),
        kind: "Namespace".into(),
        namespace: None,
        name: home,
    };
    assert!(
        engine
            .cluster()
            .get(&namespace)
            .await
            .expect("get")
            .is_some()
    );
    engine
        .cluster()
        .delete(&namespace, capstan_cluster::PropagationPolicy::Background)
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn a_no_op_sync_writes_nothing_not_even_the_inventory() {
    let engine = Engine::new(cluster().await);
    let ns = TestNamespace::create(&engine.cluster().client(), "engine-noop").await;
    let app = app(ns.name());
    let objects = || vec![config_map("a", "1"), config_map("b", "1")];
    let first = engine
        .sync(&app, objects(), &prune())
        .await
        .expect("first sync");
    let version = |name: &'static str| {
        let cluster = engine.cluster().clone();
        let namespace = ns.name().to_string();
        async move {
            cluster
                .config_map(&namespace, name)
                .await
                .expect("get")
                .and_then(|c| c.metadata.resource_version)
        }
    };
    let before = (
        version("capstan-inventory-shop").await,
        version("a").await,
        version("b").await,
    );
    let again = engine
        .sync(&app, objects(), &prune())
        .await
        .expect("no-op sync");
    assert_eq!(again.changes.count(capstan_apply::Outcome::Unchanged), 2);
    let after = (
        version("capstan-inventory-shop").await,
        version("a").await,
        version("b").await,
    );
    assert_eq!(before, after, "no object and no inventory was written");
    assert_eq!(first.plan.hash.len(), 64);
}

#[tokio::test]
async fn a_sync_leaves_ignored_fields_as_another_manager_set_them() {
    let engine = Engine::new(cluster().await);
    let ns = TestNamespace::create(&engine.cluster().client(), "engine-ignore").await;
    let mut app = app(ns.name());
    app.policy.ignore_differences = vec![capstan_plan::IgnoreDifference {
        group: "apps".into(),
        kind: "Deployment".into(),
        json_pointers: vec!["/spec/replicas".into()],
        ..Default::default()
    }];
    let web = |image: &str| {
        desired(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image}]}}}}),
        )
    };
    let first = engine
        .sync(&app, vec![web("nginx:1.27")], &SyncRequest::default())
        .await
        .expect("first sync");
    assert_eq!(
        first.changes.count(capstan_apply::Outcome::Created),
        1,
        "a create is applied as Git has it"
    );
    let status = kubectl()
        .args(["-n", ns.name(), "scale", "deployment/web", "--replicas=3"])
        .status()
        .expect("kubectl scale");
    assert!(status.success());

    let unchanged = engine
        .sync(&app, vec![web("nginx:1.27")], &SyncRequest::default())
        .await
        .expect("sync");
    assert_eq!(
        unchanged.changes.count(capstan_apply::Outcome::Unchanged),
        1
    );
    let updated = engine
        .sync(&app, vec![web("nginx:1.28")], &SyncRequest::default())
        .await
        .expect("sync");
    assert_eq!(updated.plan.changes[0].ignored, vec!["/spec/replicas"]);
    let live = engine
        .cluster()
        .get(&updated.plan.changes[0].object)
        .await
        .expect("get")
        .expect("live");
    assert_eq!(live.data["spec"]["replicas"], json!(3), "still as scaled");
    assert_eq!(
        live.data["spec"]["template"]["spec"]["containers"][0]["image"],
        json!("nginx:1.28")
    );
}
