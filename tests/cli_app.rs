//! `capstan status` and `capstan delete` against an app synced on the real control plane.

use std::process::{Command, Output};

use capstan_core::ownership::AppId;
use capstan_engine::plan::DesiredObject;
use capstan_engine::{App, Engine, Policy, SyncRequest};
use capstan_test_support::{TestNamespace, cluster, kubeconfig};
use serde_json::json;

fn capstan(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .output()
        .expect("run capstan")
}

#[tokio::test]
async fn status_lists_owned_objects_with_health_and_delete_removes_them() {
    let engine = Engine::new(cluster().await);
    let ns = TestNamespace::create(&engine.cluster().client(), "cli-status").await;
    let app = App {
        id: AppId::new(ns.name(), "shop"),
        destination_namespace: ns.name().to_string(),
        policy: Policy::default(),
    };
    let objects = ["a", "b"]
        .iter()
        .map(|name| DesiredObject {
            object: serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name}, "data": {}}))
            .expect("object"),
            provenance: "test".into(),
        })
        .collect();
    let report = engine
        .sync(&app, objects, &SyncRequest::default())
        .await
        .expect("sync");

    let output = capstan(&["status", "--app", "shop", "-n", ns.name(), "-o", "json"]);
    assert!(output.status.success(), "{output:?}");
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(status["health"], "Current", "{status}");
    let names: Vec<&str> = status["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|row| row["object"]["name"].as_str())
        .collect();
    assert_eq!(names, vec!["a", "b"]);

    let output = capstan(&["delete", "--app", "shop", "-n", ns.name()]);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("2 pruned"));
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

    let output = capstan(&["status", "--app", "shop"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("-n NAMESPACE"));
}
