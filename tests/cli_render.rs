//! `capstan render` with the jsonnet renderer and its flags (no cluster needed).

mod common;

use common::capstan;

#[test]
fn render_passes_jsonnet_ext_vars_tlas_and_jpath() {
    let repo = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(repo.path().join(".git")).expect("mark the repository root");
    std::fs::create_dir_all(repo.path().join("app")).expect("mkdir app");
    std::fs::create_dir_all(repo.path().join("lib")).expect("mkdir lib");
    std::fs::write(
        repo.path().join("lib/cm.libsonnet"),
        "{ cm(name, data):: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name }, data: data } }",
    )
    .expect("write lib");
    std::fs::write(
        repo.path().join("app/main.jsonnet"),
        "function(replicas, tier) (import 'cm.libsonnet').cm('settings-' + std.extVar('env'), { replicas: std.toString(replicas), tier: tier, flags: std.toString(std.extVar('flags')) })",
    )
    .expect("write main");
    let output = capstan()
        .arg("render")
        .arg(repo.path().join("app"))
        .args(["--renderer", "jsonnet", "--jpath", "lib"])
        .args(["--ext-str", "env=prod", "--ext-code", "flags=[1, 2]"])
        .args(["--tla-code", "replicas=2 + 1", "--tla-str", "tier=backend"])
        .args(["-o", "json"])
        .output()
        .expect("run capstan render");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON List");
    assert_eq!(
        list["items"],
        serde_json::json!([{
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings-prod"},
            "data": {"replicas": "3", "tier": "backend", "flags": "[1, 2]"},
        }])
    );

    let bad = capstan()
        .arg("render")
        .arg(repo.path().join("app"))
        .args(["--renderer", "jsonnet", "--ext-str", "no-equals-sign"])
        .output()
        .expect("run capstan render");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--ext-str expects NAME=VALUE"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
