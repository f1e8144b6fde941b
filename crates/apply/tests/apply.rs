//! Applying plans on the real control plane: order (namespaces, CRDs, waves, hooks), no-op syncs,
//! immutable fields, conflicts with other managers, and prune that never touches foreign objects.

use capstan_apply::{ApplyError, ApplyFailure, ApplyOptions, ChangeSet, Conflicts, Outcome, apply};
use capstan_cluster::{Cluster, Ownership};
use capstan_core::ObjectRef;
use capstan_core::ownership::AppId;
use capstan_inventory::Inventory;
use capstan_plan::{DesiredObject, Plan, PlanOptions, plan};
use capstan_test_support::{TestNamespace, cluster, kubectl};
use kube::api::DynamicObject;
use serde_json::{Value, json};

fn desired(value: Value) -> DesiredObject {
    DesiredObject {
        object: serde_json::from_value(value).expect("object"),
        provenance: "objects.yaml".into(),
    }
}

fn config_map(name: &str, annotations: Value) -> DesiredObject {
    desired(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "annotations": annotations}, "data": {"k": name}}))
}

async fn sync(
    cluster: &Cluster,
    app: &AppId,
    namespace: &str,
    objects: Vec<DesiredObject>,
    previous: &Inventory,
    options: &ApplyOptions,
) -> (Plan, Result<ChangeSet, ApplyError>) {
    let plan_options = PlanOptions {
        replace: options.replace,
        ..Default::default()
    };
    let planned = plan(cluster, app, namespace, objects, previous, &plan_options)
        .await
        .expect("plan");
    let result = apply(cluster, &planned, options).await;
    (planned, result)
}

async fn resource_version(cluster: &Cluster, object: &ObjectRef) -> u64 {
    let live = cluster.get(object).await.expect("get").expect("exists");
    live.metadata
        .resource_version
        .expect("resourceVersion")
        .parse()
        .expect("etcd revision")
}

#[tokio::test]
async fn namespace_crd_and_custom_resource_in_one_sync_then_no_op() {
    let cluster = cluster().await;
    let home = TestNamespace::create(&cluster.client(), "apply-crd").await;
    let app = AppId::new(home.name(), "platform");
    let group = format!("{}.apply.capstan.dev", home.name());
    let new_namespace = format!("{}-extra", home.name());
    // Listed in the wrong order on purpose: apply must sort it out.
    let objects = || {
        vec![
            desired(
                json!({"apiVersion": format!("{group}/v1"), "kind": "Gadget",
                "metadata": {"name": "g", "namespace": new_namespace}, "spec": {"size": 1}}),
            ),
            desired(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "inside", "namespace": new_namespace}, "data": {}})),
            desired(
                json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": format!("gadgets.{group}")},
                "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                    "versions": [{"name": "v1", "served": true, "storage": true,
                        "schema": {"openAPIV3Schema": {"type": "object",
                            "x-kubernetes-preserve-unknown-fields": true}}}]}}),
            ),
            desired(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": new_namespace}}),
            ),
        ]
    };
    let (first, result) = sync(
        &cluster,
        &app,
        home.name(),
        objects(),
        &Inventory::new(),
        &ApplyOptions::default(),
    )
    .await;
    let changed = result.unwrap_or_else(|e| panic!("sync failed: {e}"));
    assert_eq!(changed.count(Outcome::Created), 4, "{changed:?}");
    for change in &first.changes {
        assert!(
            cluster.get(&change.object).await.expect("get").is_some(),
            "{} exists",
            change.object
        );
    }

    let versions_before: Vec<u64> = {
        let mut v = Vec::new();
        for change in &first.changes {
            v.push(resource_version(&cluster, &change.object).await);
        }
        v
    };
    let (again, result) = sync(
        &cluster,
        &app,
        home.name(),
        objects(),
        &first.desired_inventory(),
        &ApplyOptions::default(),
    )
    .await;
    let changed = result.expect("no-op sync");
    assert!(
        !again.has_changes(true),
        "{:#?}",
        again
            .changes
            .iter()
            .map(|c| (&c.object, c.action, &c.diff))
            .collect::<Vec<_>>()
    );
    assert_eq!(changed.count(Outcome::Unchanged), 4);
    // The namespace, the CRD (its schema and versions as the server stored them), the custom
    // resource and the ConfigMap (whose `data: {}` the server does not store) need no dry-run to be
    // known unchanged.
    for change in &again.changes {
        assert_eq!(
            change.not_dry_run.map(|r| r.as_str()),
            Some(capstan_plan::PROVEN_UNCHANGED),
            "{}",
            change.object
        );
    }
    for (change, before) in first.changes.iter().zip(versions_before) {
        assert_eq!(
            resource_version(&cluster, &change.object).await,
            before,
            "{} untouched",
            change.object
        );
    }

    let crd = first
        .changes
        .iter()
        .find(|c| c.object.kind == "CustomResourceDefinition")
        .expect("crd");
    cluster
        .delete(&crd.object, capstan_cluster::PropagationPolicy::Background)
        .await
        .expect("cleanup");
    let ns = first
        .changes
        .iter()
        .find(|c| c.object.kind == "Namespace")
        .expect("ns");
    cluster
        .delete(&ns.object, capstan_cluster::PropagationPolicy::Background)
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn waves_and_hooks_run_in_order() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster.client(), "apply-waves").await;
    let app = AppId::new(ns.name(), "ordered");
    let objects = vec![
        config_map("post", json!({"capstan.dev/hook": "PostSync"})),
        config_map("late", json!({"capstan.dev/sync-wave": "2"})),
        config_map("plain", json!({})),
        config_map("early", json!({"capstan.dev/sync-wave": "-3"})),
        config_map(
            "pre",
            json!({"capstan.dev/hook": "PreSync", "capstan.dev/sync-wave": "9"}),
        ),
        config_map("on-failure", json!({"capstan.dev/hook": "SyncFail"})),
    ];
    let (planned, result) = sync(
        &cluster,
        &app,
        ns.name(),
        objects,
        &Inventory::new(),
        &ApplyOptions::default(),
    )
    .await;
    result.expect("sync");
    let mut written = Vec::new();
    for name in ["pre", "early", "plain", "late", "post"] {
        let object = planned
            .changes
            .iter()
            .find(|c| c.object.name == name)
            .expect("change")
            .object
            .clone();
        written.push((resource_version(&cluster, &object).await, name));
    }
    let observed: Vec<&str> = {
        let mut sorted = written.clone();
        sorted.sort();
        sorted.into_iter().map(|(_, n)| n).collect()
    };
    assert_eq!(
        observed,
        vec!["pre", "early", "plain", "late", "post"],
        "creation order by etcd revision"
    );
    let fail_hook = planned
        .changes
        .iter()
        .find(|c| c.object.name == "on-failure")
        .expect("hook")
        .object
        .clone();
    assert!(
        cluster.get(&fail_hook).await.expect("get").is_none(),
        "SyncFail hooks only run on failure"
    );
}

fn deployment(selector: &str, annotations: Value) -> DesiredObject {
    desired(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "annotations": annotations},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": selector}},
            "template": {"metadata": {"labels": {"app": selector}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}))
}

#[tokio::test]
async fn immutable_fields_need_replace() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster.client(), "apply-immutable").await;
    let app = AppId::new(ns.name(), "web");
    let options = ApplyOptions::default();
    let none = PlanOptions::default();
    let (first, result) = sync(
        &cluster,
        &app,
        ns.name(),
        vec![deployment("a", json!({}))],
        &Inventory::new(),
        &options,
    )
    .await;
    result.expect("create");
    let web = first.changes[0].object.clone();
    let uid = |live: Option<DynamicObject>| live.expect("live").metadata.uid;
    let uid_before = uid(cluster.get(&web).await.expect("get"));

    // Without an opt-in the plan stops at the server's refusal, naming the object and the field.
    let err = plan(
        &cluster,
        &app,
        ns.name(),
        vec![deployment("b", json!({}))],
        &first.desired_inventory(),
        &none,
    )
    .await
    .expect_err("immutable selector");
    let message = err.to_string();
    assert!(
        message.contains("Deployment.apps")
            && message.contains("selector")
            && message.contains("immutable"),
        "{message}"
    );

    // Opted in on the object: the plan says replace, apply deletes and re-creates.
    let opted_in = deployment("b", json!({"capstan.dev/sync-options": "Replace=true"}));
    let planned = plan(
        &cluster,
        &app,
        ns.name(),
        vec![opted_in],
        &first.desired_inventory(),
        &none,
    )
    .await
    .expect("plan with Replace=true");
    assert_eq!(planned.changes[0].action, capstan_plan::Action::Replace);
    assert!(
        planned.changes[0].diff.contains("+      app: b"),
        "{}",
        planned.changes[0].diff
    );
    let changed = apply(&cluster, &planned, &options).await.expect("replace");
    assert_eq!(changed.count(Outcome::Replaced), 1);
    let live = cluster.get(&web).await.expect("get").expect("live");
    assert_eq!(live.data["spec"]["selector"]["matchLabels"]["app"], "b");
    let uid_after = live.metadata.uid.clone();
    assert_ne!(uid_after, uid_before, "a new object");

    // Opted in for the whole app.
    let app_wide = PlanOptions {
        replace: true,
        ..Default::default()
    };
    let planned = plan(
        &cluster,
        &app,
        ns.name(),
        vec![deployment("c", json!({}))],
        &first.desired_inventory(),
        &app_wide,
    )
    .await
    .expect("plan with app-wide replace");
    assert_eq!(planned.changes[0].action, capstan_plan::Action::Replace);
    apply(
        &cluster,
        &planned,
        &ApplyOptions {
            replace: true,
            ..Default::default()
        },
    )
    .await
    .expect("replace");
    assert_ne!(uid(cluster.get(&web).await.expect("get")), uid_after);

    // A plan made before someone else's change can still meet the refusal at apply time.
    let mut stale = planned.clone();
    stale.changes[0].action = capstan_plan::Action::Update;
    stale.changes[0].desired = deployment("d", json!({})).object;
    mark_for(&app, &mut stale.changes[0].desired, ns.name());
    let err = apply(&cluster, &stale, &options)
        .await
        .expect_err("immutable");
    assert!(
        matches!(err.failure, ApplyFailure::Immutable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("Replace=true"), "{err}");
}

fn mark_for(app: &AppId, object: &mut DynamicObject, namespace: &str) {
    object.metadata.namespace = Some(namespace.to_string());
    capstan_core::ownership::mark(object, app);
}

#[tokio::test]
async fn conflicts_fail_names_manager_and_field_else_git_wins() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster.client(), "apply-conflict").await;
    let app = AppId::new(ns.name(), "web");
    let (_, result) = sync(
        &cluster,
        &app,
        ns.name(),
        vec![deployment("web", json!({}))],
        &Inventory::new(),
        &ApplyOptions::default(),
    )
    .await;
    result.expect("create");
    let status = kubectl()
        .args([
            "-n",
            ns.name(),
            "set",
            "image",
            "deployment/web",
            "web=nginx:edited",
        ])
        .status()
        .expect("kubectl set image");
    assert!(status.success());

    let strict = ApplyOptions {
        conflicts: Conflicts::Fail,
        ..Default::default()
    };
    let (planned, result) = sync(
        &cluster,
        &app,
        ns.name(),
        vec![deployment("web", json!({}))],
        &Inventory::new(),
        &strict,
    )
    .await;
    assert!(
        planned.changes[0]
            .drift
            .iter()
            .any(|d| d.managers.contains(&"kubectl-set".to_string())),
        "{:?}",
        planned.changes[0].drift
    );
    let err = result.expect_err("conflict");
    let message = err.to_string();
    assert!(
        message.contains("kubectl-set") && message.contains("image"),
        "{message}"
    );

    let (_, result) = sync(
        &cluster,
        &app,
        ns.name(),
        vec![deployment("web", json!({}))],
        &Inventory::new(),
        &ApplyOptions::default(),
    )
    .await;
    result.expect("git wins");
    let live = cluster
        .get(&planned.changes[0].object)
        .await
        .expect("get")
        .expect("live");
    assert_eq!(
        live.data["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
}

#[tokio::test]
async fn prune_deletes_only_what_this_app_owns() {
    let cluster = cluster().await;
    let ns = TestNamespace::create(&cluster.client(), "apply-prune").await;
    let app = AppId::new(ns.name(), "shop");
    let options = ApplyOptions {
        prune: true,
        ..Default::default()
    };
    let (first, result) = sync(
        &cluster,
        &app,
        ns.name(),
        vec![config_map("keep", json!({})), config_map("drop", json!({}))],
        &Inventory::new(),
        &options,
    )
    .await;
    result.expect("first");

    // Another app's object that a (stale) inventory lists: it must survive.
    let other = AppId::new(ns.name(), "other");
    let mut foreign = config_map("foreign", json!({})).object;
    mark_for(&other, &mut foreign, ns.name());
    cluster
        .apply(&foreign, Ownership::Force, false)
        .await
        .expect("foreign");
    let mut previous = first.desired_inventory();
    previous.insert(ObjectRef::from_object(&foreign).expect("ref"));

    let (second, result) = sync(
        &cluster,
        &app,
        ns.name(),
        vec![config_map("keep", json!({}))],
        &previous,
        &options,
    )
    .await;
    let changed = result.expect("second");
    assert_eq!(changed.count(Outcome::Pruned), 1, "{changed:?}");
    let name_of = |n: &str| {
        first
            .changes
            .iter()
            .find(|c| c.object.name == n)
            .expect("c")
            .object
            .clone()
    };
    assert!(
        cluster.get(&name_of("drop")).await.expect("get").is_none(),
        "pruned"
    );
    assert!(cluster.get(&name_of("keep")).await.expect("get").is_some());
    assert!(
        cluster
            .get(&ObjectRef::from_object(&foreign).expect("ref"))
            .await
            .expect("get")
            .is_some(),
        "foreign object survives"
    );
    assert_eq!(second.prune.len(), 2);
}

#[tokio::test]
async fn presync_hook_in_a_new_namespace_completes_before_the_sync_and_is_deleted_on_success() {
    let cluster = cluster().await;
    let home = TestNamespace::create(&cluster.client(), "apply-hooks").await;
    let app = AppId::new(home.name(), "hooked");
    let target = format!("{}-target", home.name());
    let objects = vec![
        desired(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "web", "namespace": target}, "data": {"after": "migration"}})),
        desired(json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate", "namespace": target,
                "annotations": {"capstan.dev/hook": "PreSync"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "m", "image": "busybox"}]}}}})),
        desired(json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "smoke-test", "namespace": target,
                "annotations": {"capstan.dev/hook": "PostSync",
                    "capstan.dev/hook-delete-policy": "HookSucceeded"}},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "t", "image": "busybox"}]}}}})),
        desired(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}})),
    ];
    let (planned, result) = sync(
        &cluster,
        &app,
        home.name(),
        objects,
        &Inventory::new(),
        &ApplyOptions::default(),
    )
    .await;
    result.unwrap_or_else(|e| panic!("sync failed: {e}"));
    let object = |name: &str| {
        planned
            .changes
            .iter()
            .find(|c| c.object.name == name)
            .expect("change")
            .object
            .clone()
    };

    // The PreSync Job finished (its last write is the Complete status) before the ConfigMap of the Sync
    // phase was created (a ConfigMap is written once, so its resourceVersion is its creation).
    let migrate = cluster
        .get(&object("migrate"))
        .await
        .expect("get")
        .expect("migrate kept");
    let complete = migrate.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Complete" && c["status"] == "True");
    assert!(complete, "{:?}", migrate.data["status"]);
    let migrate_done: u64 = migrate
        .metadata
        .resource_version
        .clone()
        .expect("rv")
        .parse()
        .expect("revision");
    let web = cluster
        .get(&object("web"))
        .await
        .expect("get")
        .expect("web");
    let web_created: u64 = web
        .metadata
        .resource_version
        .expect("rv")
        .parse()
        .expect("revision");
    assert!(
        migrate_done < web_created,
        "hook done at {migrate_done}, sync object created at {web_created}"
    );

    // The PostSync hook ran and was deleted because it succeeded.
    assert!(
        cluster
            .get(&object("smoke-test"))
            .await
            .expect("get")
            .is_none()
    );

    // Hooks run again on the next sync (the Job is re-created).
    let uid_before = migrate.metadata.uid;
    let (again, result) = sync(
        &cluster,
        &app,
        home.name(),
        planned
            .changes
            .iter()
            .map(|c| DesiredObject {
                object: c.desired.clone(),
                provenance: c.provenance.clone(),
            })
            .collect(),
        &planned.desired_inventory(),
        &ApplyOptions::default(),
    )
    .await;
    result.expect("second sync");
    assert_eq!(
        again
            .changes
            .iter()
            .find(|c| c.object.name == "migrate")
            .expect("hook")
            .action,
        capstan_plan::Action::Replace
    );
    let rerun = cluster
        .get(&object("migrate"))
        .await
        .expect("get")
        .expect("migrate");
    assert_ne!(rerun.metadata.uid, uid_before);
    cluster
        .delete(
            &object(&target),
            capstan_cluster::PropagationPolicy::Background,
        )
        .await
        .expect("cleanup");
}
