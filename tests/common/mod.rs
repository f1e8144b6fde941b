//! Shared by the binary's integration tests (`mod common;` in each).

use std::process::{Command, Output};

use capstan_test_support::kubeconfig;

/// The `capstan` binary under test, without the calling shell's cluster and git credential
/// variables: a test passes the kubeconfig, context and credentials it means.
pub fn capstan() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_capstan"));
    command
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("CAPSTAN_GIT_PASSWORD")
        .env_remove("CAPSTAN_GIT_TOKEN");
    command
}

/// Runs `capstan ARGS --kubeconfig <the test control plane>` to completion.
#[allow(dead_code)] // not every test binary talks to the cluster
pub fn capstan_on_cluster(args: &[&str]) -> Output {
    capstan()
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .output()
        .expect("run capstan")
}
