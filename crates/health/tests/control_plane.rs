//! Health verdicts on objects that real controllers wrote status for: the deployment, job, namespace
//! and apiextensions controllers of the test control plane, the scheduler, and kwok running Pods on
//! fake nodes. Each test has its own namespace, so they run in parallel.

use std::time::Duration;

use capstan_cluster::FIELD_MANAGER;
use capstan_health::workloads::{pod_selector, with_pod_reasons};
use capstan_health::{Health, HealthRules, HealthStatus, assess};
use capstan_test_support::{TestNamespace, client, eventually};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    TypeMeta,
};
use kube::{Api, Client};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

fn namespaced(client: &Client, namespace: &str, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, resource)
}

/// Lists `resource` objects matching `selector`. The items of a list response carry no
/// apiVersion/kind; health needs them, so they are filled in from the resource listed.
async fn list(
    api: &Api<DynamicObject>,
    resource: &ApiResource,
    selector: &str,
) -> Vec<DynamicObject> {
    let list = api
        .list(&ListParams::default().labels(selector))
        .await
        .unwrap_or_else(|e| panic!("listing {}: {e}", resource.plural));
    list.items
        .into_iter()
        .map(|mut object| {
            object.types = Some(TypeMeta {
                api_version: resource.api_version.clone(),
                kind: resource.kind.clone(),
            });
            object
        })
        .collect()
}

/// Server-side apply as Capstan does it, returning what the API server stored.
async fn apply(api: &Api<DynamicObject>, manifest: &Value) -> DynamicObject {
    let name = manifest["metadata"]["name"]
        .as_str()
        .expect("manifest has a name");
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER),
        &Patch::Apply(manifest),
    )
    .await
    .unwrap_or_else(|e| panic!("server-side apply of {name}: {e}"))
}

/// Reads `name` until its verdict satisfies `done`; returns that verdict.
async fn wait_for_health(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    done: impl Fn(&Health) -> bool,
) -> Health {
    eventually(WAIT, what, || {
        let api = api.clone();
        let done = &done;
        async move {
            let object = api.get(name).await.map_err(|e| e.to_string())?;
            let health = assess(&object);
            if done(&health) {
                Ok(health)
            } else {
                Err(format!("{health}"))
            }
        }
    })
    .await
}

fn deployment(name: &str, replicas: i64, pod_spec: Value, extra_spec: Value) -> Value {
    let mut manifest = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": pod_spec
            }
        }
    });
    if let (Some(spec), Some(extra)) = (manifest["spec"].as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    manifest
}

fn containers() -> Value {
    json!([{ "name": "app", "image": "nginx:1.27" }])
}

#[tokio::test]
async fn deployment_becomes_current_when_kwok_runs_its_pods() {
    let client = client().await;
    let namespace = TestNamespace::create(&client, "health-deploy").await;
    let api = namespaced(
        &client,
        namespace.name(),
        &ApiResource::erase::<Deployment>(&()),
    );

    let manifest = deployment("web", 2, json!({ "containers": containers() }), json!({}));
    let applied = apply(&api, &manifest).await;
    // What the API server stored has no status yet: nothing has rolled out.
    let first = assess(&applied);
    assert_eq!(first.status, HealthStatus::InProgress, "{first}");

    let health = wait_for_health(
        &api,
        "web",
        "Deployment web to be Current",
        Health::is_current,
    )
    .await;
    assert_eq!(
        health,
        Health::current("Deployment is available: 2 replicas")
    );

    // Its Pods are Current too, and a Current workload is not "explained" by them.
    let selector = pod_selector(&applied).expect("the Deployment has a selector");
    assert_eq!(selector, "app=web");
    let pod_resource = ApiResource::erase::<Pod>(&());
    let pods = list(
        &namespaced(&client, namespace.name(), &pod_resource),
        &pod_resource,
        &selector,
    )
    .await;
    assert_eq!(pods.len(), 2);
    for pod in &pods {
        assert_eq!(assess(pod), Health::current("Pod is Ready"));
    }
    assert_eq!(with_pod_reasons(health.clone(), &pods), health);

    // A new image: the API server bumps the generation, and until the deployment controller has seen
    // it the old status means nothing.
    let mut update = manifest.clone();
    update["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    let updated = apply(&api, &update).await;
    assert_eq!(
        assess(&updated),
        Health::in_progress(
            "waiting for the Deployment controller to observe generation 2 (observed 1)"
        )
    );
    let health =
        wait_for_health(&api, "web", "the rollout of nginx:1.28", Health::is_current).await;
    assert_eq!(
        health,
        Health::current("Deployment is available: 2 replicas")
    );
}

#[tokio::test]
async fn stateful_set_daemon_set_replica_set_and_pdb_become_current() {
    let client = client().await;
    let namespace = TestNamespace::create(&client, "health-kinds").await;
    let ns = namespace.name();
    let stateful_sets = namespaced(&client, ns, &ApiResource::erase::<StatefulSet>(&()));
    let daemon_sets = namespaced(&client, ns, &ApiResource::erase::<DaemonSet>(&()));
    let replica_sets = namespaced(&client, ns, &ApiResource::erase::<ReplicaSet>(&()));
    let budgets = namespaced(&client, ns, &ApiResource::erase::<PodDisruptionBudget>(&()));

    let template = |app: &str| {
        json!({
            "metadata": { "labels": { "app": app } },
            "spec": { "containers": containers() }
        })
    };
    let selector = |app: &str| json!({ "matchLabels": { "app": app } });
    apply(
        &stateful_sets,
        &json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": { "name": "db" },
            "spec": { "replicas": 2, "serviceName": "db", "selector": selector("db"), "template": template("db") }
        }),
    )
    .await;
    apply(
        &daemon_sets,
        &json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": { "name": "agent" },
            "spec": { "selector": selector("agent"), "template": template("agent") }
        }),
    )
    .await;
    apply(
        &replica_sets,
        &json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": { "name": "cache" },
            "spec": { "replicas": 2, "selector": selector("cache"), "template": template("cache") }
        }),
    )
    .await;
    apply(
        &budgets,
        &json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": { "name": "db" },
            "spec": { "minAvailable": 1, "selector": selector("db") }
        }),
    )
    .await;

    let health = wait_for_health(&stateful_sets, "db", "StatefulSet db", Health::is_current).await;
    assert_eq!(health, Health::current("2/2 replicas ready"));
    let health =
        wait_for_health(&daemon_sets, "agent", "DaemonSet agent", Health::is_current).await;
    // One pod per kwok node; the harness makes at least two.
    assert!(
        health.message.ends_with(" pods ready") && !health.message.starts_with("0/"),
        "{health}"
    );
    let health = wait_for_health(
        &replica_sets,
        "cache",
        "ReplicaSet cache",
        Health::is_current,
    )
    .await;
    assert_eq!(
        health,
        Health::current("ReplicaSet is available: 2 replicas")
    );
    // Once the StatefulSet's two pods run, the budget allows one disruption.
    let health = wait_for_health(&budgets, "db", "PodDisruptionBudget db", |h| {
        h.message == "2/1 healthy pods, 1 disruptions allowed"
    })
    .await;
    assert!(health.is_current(), "{health}");
}

#[tokio::test]
async fn services_and_claims_without_a_provider_wait() {
    let client = client().await;
    let namespace = TestNamespace::create(&client, "health-svc").await;
    let services = namespaced(
        &client,
        namespace.name(),
        &ApiResource::erase::<Service>(&()),
    );
    let claims = namespaced(
        &client,
        namespace.name(),
        &ApiResource::erase::<PersistentVolumeClaim>(&()),
    );
    let service = |name: &str, type_: &str| {
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": { "name": name },
            "spec": { "type": type_, "selector": { "app": "web" }, "ports": [{ "port": 80 }] }
        })
    };
    let cluster_ip = apply(&services, &service("internal", "ClusterIP")).await;
    assert_eq!(assess(&cluster_ip), Health::current("Service is ready"));
    apply(&services, &service("public", "LoadBalancer")).await;
    apply(
        &claims,
        &json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": { "name": "data" },
            "spec": { "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                      "resources": { "requests": { "storage": "1Gi" } } }
        }),
    )
    .await;

    // The test control plane has no load-balancer controller and no volumes: both stay in progress,
    // and say what they wait for. Re-read a few times so a controller had its chance to act.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let public = services.get("public").await.expect("get service");
        assert_eq!(
            assess(&public),
            Health::in_progress("waiting for a load balancer address")
        );
        let data = claims.get("data").await.expect("get claim");
        assert_eq!(
            assess(&data),
            Health::in_progress("PVC is not Bound (phase Pending)")
        );
    }
}

#[tokio::test]
async fn unschedulable_deployment_stays_in_progress_and_its_pod_says_why() {
    let client = client().await;
    let namespace = TestNamespace::create(&client, "health-unsched").await;
    let deployments = namespaced(
        &client,
        namespace.name(),
        &ApiResource::erase::<Deployment>(&()),
    );
    let pod_resource = ApiResource::erase::<Pod>(&());
    let pods = namespaced(&client, namespace.name(), &pod_resource);

    let pod_spec = json!({
        "containers": containers(),
        "nodeSelector": { "capstan.dev/no-such-node": "true" }
    });
    let applied = apply(&deployments, &deployment("stuck", 1, pod_spec, json!({}))).await;
    let selector = pod_selector(&applied).expect("selector");

    let pod_health = eventually(WAIT, "the scheduler to mark the Pod unschedulable", || {
        let (pods, pod_resource, selector) = (pods.clone(), pod_resource.clone(), selector.clone());
        async move {
            let items = list(&pods, &pod_resource, &selector).await;
            let verdicts: Vec<Health> = items.iter().map(assess).collect();
            verdicts
                .iter()
                .find(|h| h.message.starts_with("Pod unschedulable:"))
                .cloned()
                .ok_or_else(|| format!("{verdicts:?}"))
        }
    })
    .await;
    assert_eq!(pod_health.status, HealthStatus::InProgress, "{pod_health}");
    // The scheduler's own words, e.g. "0/2 nodes are available: 2 node(s) didn't match Pod's node
    // affinity/selector. ..."; the node count depends on CAPSTAN_TESTENV_NODES.
    assert!(
        pod_health.message.contains("nodes are available")
            && pod_health
                .message
                .contains("didn't match Pod's node affinity/selector"),
        "{pod_health}"
    );

    // The Deployment is not Current, and with its Pods it says why.
    let stuck = deployments.get("stuck").await.expect("get deployment");
    let health = assess(&stuck);
    assert_eq!(health.status, HealthStatus::InProgress, "{health}");
    let pod_list = list(&pods, &pod_resource, &selector).await;
    let explained = with_pod_reasons(health, &pod_list);
    assert_eq!(explained.status, HealthStatus::InProgress);
    assert!(
        explained.message.contains("; pod stuck-")
            && explained.message.contains(&pod_health.message),
        "{explained}"
    );

    // Still not Current a while later: nothing will schedule it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = assess(&deployments.get("stuck").await.expect("get deployment"));
    assert_eq!(later.status, HealthStatus::InProgress, "{later}");
}

#[tokio::test]
async fn deployment_past_its_progress_deadline_fails() {
    let client = client().await;
    let namespace = TestNamespace::create(&client, "health-deadline").await;
    let deployments = namespaced(
        &client,
        namespace.name(),
        &ApiResource::erase::<Deployment>(&()),
    );
    let pod_spec = json!({
        "containers": containers(),
        "nodeSelector": { "capstan.dev/no-such-node": "true" }
    });
    let manifest = deployment("late", 1, pod_spec, json!({ "progressDeadlineSeconds": 3 }));
    apply(&deployments, &manifest).await;

    let health = wait_for_health(
        &deployments,
        "late",
        "the deployment controller to give up on Deployment late",
        |h| h.status != HealthStatus::InProgress,
    )
    .await;
    assert_eq!(health.status, HealthStatus::Failed, "{health}");
    assert!(
        health
            .message
            .starts_with("progress deadline exceeded: ReplicaSet \"late-")
            && health.message.ends_with("has timed out progressing."),
        "{health}"
    );
}

#[tokio::test]
async fn job_runs_to_completion() {
    let client = client().await;
    let namespace = TestNamespace::create(&client, "health-job").await;
    let jobs = namespaced(&client, namespace.name(), &ApiResource::erase::<Job>(&()));
    let manifest = json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": "migrate" },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{ "name": "migrate", "image": "busybox:1.36", "command": ["true"] }]
                }
            }
        }
    });
    let applied = apply(&jobs, &manifest).await;
    assert_eq!(assess(&applied), Health::in_progress("Job not started"));

    // kwok's default stages move a Job's Pod to Succeeded once it runs; the job controller then
    // sets Complete.
    let health = wait_for_health(&jobs, "migrate", "Job migrate to finish", |h| {
        h.status != HealthStatus::InProgress
    })
    .await;
    assert_eq!(health, Health::current("Job completed: 1/1 succeeded"));
}

#[tokio::test]
async fn namespace_is_current_and_terminating_while_content_holds_it() {
    let client = client().await;
    let namespace = TestNamespace::create(&client, "health-ns").await;
    let namespaces =
        Api::<DynamicObject>::all_with(client.clone(), &ApiResource::erase::<Namespace>(&()));
    let live = namespaces
        .get(namespace.name())
        .await
        .expect("get namespace");
    assert_eq!(assess(&live), Health::current("Namespace is active"));

    // A finalizer on a ConfigMap keeps the namespace (and the ConfigMap) in deletion.
    let config_maps = namespaced(
        &client,
        namespace.name(),
        &ApiResource::erase::<ConfigMap>(&()),
    );
    let held = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "held", "finalizers": ["capstan.dev/test-hold"] }
    });
    apply(&config_maps, &held).await;
    namespaces
        .delete(namespace.name(), &DeleteParams::background())
        .await
        .expect("delete namespace");

    let health = wait_for_health(
        &namespaces,
        namespace.name(),
        "the namespace to be Terminating",
        |h| h.status == HealthStatus::Terminating,
    )
    .await;
    assert_eq!(health.message, "Resource scheduled for deletion");
    let health = wait_for_health(
        &config_maps,
        "held",
        "the ConfigMap to be Terminating",
        |h| h.status == HealthStatus::Terminating,
    )
    .await;
    assert_eq!(health.message, "Resource scheduled for deletion");

    // Let it go.
    let release = json!({ "metadata": { "finalizers": null } });
    config_maps
        .patch("held", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .expect("remove finalizer");
}

#[tokio::test]
async fn crd_becomes_current_when_established_and_custom_rules_judge_its_objects() {
    let client = client().await;
    let namespace = TestNamespace::create(&client, "health-crd").await;
    // CRDs are cluster-scoped: a group unique to this test's namespace keeps parallel runs apart.
    let group = format!("{}.health.capstan.dev", namespace.name());
    let crd_name = format!("gadgets.{group}");
    let crds = Api::<DynamicObject>::all_with(
        client.clone(),
        &ApiResource::erase::<CustomResourceDefinition>(&()),
    );
    let manifest = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": crd_name },
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": { "plural": "gadgets", "singular": "gadget", "kind": "Gadget" },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": {
                        "type": "object",
                        "properties": { "size": { "type": "integer" } }
                    } }
                } }
            }]
        }
    });
    let applied = apply(&crds, &manifest).await;
    assert_eq!(
        assess(&applied),
        Health::in_progress("waiting for the CRD to be established")
    );
    let health = wait_for_health(
        &crds,
        &crd_name,
        "the CRD to be established",
        Health::is_current,
    )
    .await;
    assert_eq!(health, Health::current("CRD is established"));

    // Its objects: no status, so the built-in rules say Current; a custom rule can say otherwise.
    let gadget_resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&group, "v1", "Gadget"),
        "gadgets",
    );
    let gadgets = namespaced(&client, namespace.name(), &gadget_resource);
    let api_version = format!("{group}/v1");
    let small = apply(
        &gadgets,
        &json!({"apiVersion": api_version, "kind": "Gadget", "metadata": {"name": "small"}, "spec": {"size": 0}}),
    )
    .await;
    let big = apply(
        &gadgets,
        &json!({"apiVersion": api_version, "kind": "Gadget", "metadata": {"name": "big"}, "spec": {"size": 5}}),
    )
    .await;
    assert_eq!(assess(&small), Health::current("Resource exists"));
    let rule =
        r#"object.spec.size > 0 ? true : {"status": "Failed", "message": "size must be positive"}"#;
    let rules = HealthRules::from_rules([(group.as_str(), "Gadget", rule)]).expect("rule compiles");
    assert_eq!(
        rules.assess(&small),
        Health::failed("size must be positive")
    );
    assert!(rules.assess(&big).is_current());

    // A second CRD claiming the same kind in the group is refused by the apiextensions controller
    // (it checks the list kind first, so that is the conflict it names).
    let rival_name = format!("rivals.{group}");
    let mut rival = manifest.clone();
    rival["metadata"]["name"] = json!(rival_name);
    rival["spec"]["names"] = json!({ "plural": "rivals", "singular": "rival", "kind": "Gadget" });
    apply(&crds, &rival).await;
    let health = wait_for_health(&crds, &rival_name, "the rival CRD to be refused", |h| {
        h.status != HealthStatus::InProgress
    })
    .await;
    assert_eq!(
        health,
        Health::failed("names not accepted: ListKindConflict: \"GadgetList\" is already in use")
    );

    for name in [&crd_name, &rival_name] {
        crds.delete(name, &DeleteParams::background())
            .await
            .expect("delete CRD");
    }
}

#[tokio::test]
async fn built_in_api_service_is_current() {
    let client = client().await;
    let api_services = Api::<DynamicObject>::all_with(
        client,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiregistration.k8s.io", "v1", "APIService"),
            "apiservices",
        ),
    );
    let apps = api_services.get("v1.apps").await.expect("get APIService");
    assert_eq!(assess(&apps), Health::current("APIService is available"));
}
