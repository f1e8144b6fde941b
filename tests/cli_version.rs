//! `capstan version` against the real control plane, selecting the cluster the way kubectl does.

mod common;

use std::process::Output;

use capstan_test_support::kubeconfig;

use common::capstan;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    capstan()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run capstan")
}

fn stdout(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("json output")
}

#[test]
fn reports_client_and_server_version_from_kubeconfig_flag() {
    let path = kubeconfig().to_str().expect("utf-8 path");
    let report = stdout(&run(&["version", "--kubeconfig", path, "-o", "json"], &[]));
    assert_eq!(report["capstan"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        report["capstan"]["commit"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    let server = report["server"]["git_version"].as_str().unwrap_or_default();
    assert!(server.starts_with("v1.34."), "server version {report}");
}

#[test]
fn honours_kubeconfig_env_and_context_flag() {
    let path = kubeconfig().to_str().expect("utf-8 path");
    let home_dir = tempfile::tempdir().expect("empty home");
    let home = home_dir.path().to_str().expect("utf-8");

    // KUBECONFIG, with a missing file in the list that kubectl would skip too.
    let list = format!("/nonexistent/kubeconfig:{path}");
    let report = stdout(&run(
        &["version", "-o", "json", "--context", "capstan-testenv"],
        &[("KUBECONFIG", &list), ("HOME", home)],
    ));
    assert!(report["server"]["git_version"].is_string(), "{report}");

    // An unknown context is named in the error, together with the ones that exist.
    let output = run(
        &["version", "--kubeconfig", path, "--context", "prod"],
        &[("HOME", home)],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("\"prod\"") && stderr.contains("capstan-testenv"),
        "{stderr}"
    );
    // The client part is still printed.
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("capstan "));

    // No kubeconfig anywhere and not in a cluster: say where we looked.
    let output = run(&["version"], &[("HOME", home)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no kubeconfig found"), "{stderr}");
}
