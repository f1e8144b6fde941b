//! The `testenv/` scripts themselves: independent environments side by side, a `down` that leaves no
//! process behind, and build failures that name the step and the fix.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use capstan_cluster::{Cluster, ConnectOptions};
use capstan_test_support::workspace_root;

fn script(name: &str) -> Command {
    Command::new(workspace_root().join("testenv").join(name))
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = workspace_root()
        .join("target")
        .join("testenv-scratch")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().expect("parent")).expect("scratch dir");
    dir
}

/// (pid, binary) for each process `testenv/up` recorded.
fn recorded_processes(env_dir: &Path) -> Vec<(u32, PathBuf)> {
    std::fs::read_to_string(env_dir.join("pids"))
        .expect("pids file")
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields[0].parse().expect("pid"), PathBuf::from(fields[2]))
        })
        .collect()
}

fn still_running(pid: u32, binary: &Path) -> bool {
    // A zombie or a recycled pid no longer resolves to the binary.
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary)
}

fn up(dir: &Path) -> PathBuf {
    let output = script("up")
        .env("CAPSTAN_TESTENV_DIR", dir)
        .output()
        .expect("run testenv/up");
    assert!(
        output.status.success(),
        "testenv/up failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stdout: {stdout:?}");
    PathBuf::from(
        lines[0]
            .strip_prefix("KUBECONFIG=")
            .expect("KUBECONFIG= line"),
    )
}

#[tokio::test]
async fn two_environments_run_at_once_and_down_leaves_no_process() {
    let dirs = [scratch_dir("env-a"), scratch_dir("env-b")];
    let starts: Vec<_> = dirs
        .iter()
        .cloned()
        .map(|dir| std::thread::spawn(move || up(&dir)))
        .collect();
    let kubeconfigs: Vec<PathBuf> = starts
        .into_iter()
        .map(|t| t.join().expect("up thread"))
        .collect();

    let mut servers = Vec::new();
    for kubeconfig in &kubeconfigs {
        let cluster = Cluster::connect(&ConnectOptions {
            kubeconfig: Some(kubeconfig.clone()),
            ..Default::default()
        })
        .await
        .expect("connect");
        let version = cluster.server_version().await.expect("server version");
        assert!(version.git_version.starts_with("v1.34."), "{version:?}");
        servers.push(cluster.server_url().to_string());
    }
    assert_ne!(servers[0], servers[1], "each environment has its own port");

    for dir in &dirs {
        let processes = recorded_processes(dir);
        let names: Vec<String> = processes
            .iter()
            .map(|(_, bin)| bin.file_name().expect("name").to_string_lossy().into())
            .collect();
        for expected in [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        assert!(processes.iter().all(|(pid, bin)| still_running(*pid, bin)));

        let status = script("down").arg(dir).status().expect("run testenv/down");
        assert!(status.success());
        let left: Vec<_> = processes
            .iter()
            .filter(|(pid, bin)| still_running(*pid, bin))
            .collect();
        assert!(left.is_empty(), "processes left behind: {left:?}");
        assert!(!dir.exists(), "state directory removed");
    }
}

#[test]
fn down_refuses_a_directory_it_did_not_make() {
    let dir = scratch_dir("not-ours");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("precious"), "data").expect("write");
    let output = script("down").arg(&dir).output().expect("run down");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not made by testenv/up"));
    assert!(dir.join("precious").exists());
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn build_without_go_names_the_step_and_the_fix() {
    let cache = scratch_dir("no-go-cache");
    let output = script("build")
        .env("PATH", "/usr/bin:/bin")
        .env("CAPSTAN_CACHE", &cache)
        .output()
        .expect("run build");
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    assert!(stderr.contains("step \"find Go\" failed"), "{stderr}");
    assert!(stderr.contains("fix: install Go"), "{stderr}");
}

#[test]
fn failed_module_download_names_the_step_and_the_fix_not_go_output() {
    let cache = scratch_dir("bad-module-cache");
    let output = script("build")
        .env("CAPSTAN_CACHE", &cache)
        .env("CAPSTAN_KWOK_VERSION", "v0.0.0-does-not-exist")
        .env("GOPROXY", "off")
        .output()
        .expect("run build");
    assert!(!output.status.success());
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("step \"build kwok v0.0.0-does-not-exist\" failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fix: check that the Go module proxy is reachable"),
        "{stderr}"
    );
    assert!(
        stderr.lines().count() < 25,
        "short message, not a wall of Go output:\n{stderr}"
    );
    assert!(
        !cache
            .join("testenv/kwok-v0.0.0-does-not-exist/bin/kwok")
            .exists()
    );
}
