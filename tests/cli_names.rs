//! Hostile object names and namespaces through `capstan diff`, `plan` and `sync` on the real control
//! plane: each is refused before any request carries it, with an error naming the file and the field,
//! and nothing is created or changed.

mod common;

use capstan_test_support::{TestNamespace, client};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::ListParams;
use serde_json::json;

use common::capstan_on_cluster;

/// (what the case is, metadata.name, metadata.namespace, the field the error must name)
fn cases() -> Vec<(&'static str, String, Option<&'static str>, &'static str)> {
    vec![
        (
            "query and fragment",
            "a?fieldManager=x&force=true#".into(),
            None,
            "metadata.name",
        ),
        ("slash", "a/b".into(), None, "metadata.name"),
        ("dot dot", "..".into(), None, "metadata.name"),
        ("escaped slash", "a%2Fb".into(), None, "metadata.name"),
        ("upper case", "A".into(), None, "metadata.name"),
        ("254 characters", "a".repeat(254), None, "metadata.name"),
        ("namespace", "a".into(), Some("x?y"), "metadata.namespace"),
    ]
}

#[tokio::test]
async fn hostile_names_and_namespaces_are_refused_by_diff_plan_and_sync_before_any_write() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "names").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());

    for (case, name, namespace, field) in cases() {
        let repo = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(repo.path().join(".git")).expect("mark the repository root");
        // A valid object first: the refusal must come before anything is applied.
        let good = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "good"}, "data": {"k": "v"}});
        std::fs::write(repo.path().join("a-good.yaml"), good.to_string()).expect("write");
        let mut metadata = json!({"name": name});
        if let Some(namespace) = namespace {
            metadata["namespace"] = json!(namespace);
        }
        let bad = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata, "data": {"k": "v"}});
        // JSON is YAML, and needs no quoting rules for the hostile characters.
        std::fs::write(repo.path().join("bad.yaml"), bad.to_string()).expect("write");
        let dir = repo.path().to_str().expect("utf-8 path");

        for command in ["diff", "plan", "sync"] {
            let output = capstan_on_cluster(&[command, dir, "--app", "shop", "-n", ns.name()]);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{case}: capstan {command} must fail: {output:?}"
            );
            assert!(
                stderr.contains("bad.yaml#0") && stderr.contains(field),
                "{case}: capstan {command}'s error names the file and {field}: {stderr}"
            );
            assert!(
                stderr.contains("is not a valid"),
                "{case}: capstan {command} refuses the value itself, before the server does: \
                 {stderr}"
            );
        }
    }

    // Nothing was created: no ConfigMap `a` or `good`, no inventory, no Namespace `x`. (The only
    // ConfigMap is the one Kubernetes' root-CA publisher puts into every namespace, when it has.)
    let names: Vec<String> = config_maps
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|cm| cm.metadata.name)
        .filter(|name| name != "kube-root-ca.crt")
        .collect();
    assert_eq!(names, Vec::<String>::new());
    assert!(config_maps.get_opt("a").await.expect("get").is_none());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(namespaces.get_opt("x").await.expect("get").is_none());
}
