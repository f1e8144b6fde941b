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

/// A repository (real `git init`) with `real/` holding a ConfigMap, next to a directory outside it
/// holding a canary manifest and another Git repository holding a canary too.
struct Escape {
    _dirs: [tempfile::TempDir; 2],
    repo: std::path::PathBuf,
    outside: std::path::PathBuf,
}

const CANARY: &str = "canary-3f9c1e-must-never-be-printed";

fn escape_fixture() -> Escape {
    let workspace = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let repo = workspace.path().join("r");
    std::fs::create_dir_all(repo.join("real")).expect("mkdir real");
    capstan_test_support::git_servers::git(&repo, &["init", "-q"]);
    std::fs::write(
        repo.join("real/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: inside}\ndata: {where: inside}\n",
    )
    .expect("write inside manifest");
    let outside = elsewhere.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir outside");
    std::fs::write(
        outside.join("canary.yaml"),
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: canary}}\ndata: {{secret: {CANARY}}}\n"),
    )
    .expect("write canary");
    let other_repo = elsewhere.path().join("other-repo");
    std::fs::create_dir_all(&other_repo).expect("mkdir other repo");
    capstan_test_support::git_servers::git(&other_repo, &["init", "-q"]);
    std::fs::copy(outside.join("canary.yaml"), other_repo.join("canary.yaml")).expect("copy");
    Escape {
        _dirs: [workspace, elsewhere],
        repo,
        outside,
    }
}

fn assert_refused(output: &std::process::Output, what: &str, app: &str, root: &std::path::Path) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{what}: {stdout}{stderr}");
    assert!(
        !stdout.contains(CANARY) && !stderr.contains(CANARY),
        "{what} printed the canary: {stdout}{stderr}"
    );
    let root = root.canonicalize().expect("canonical root");
    assert!(
        stderr.contains(&format!(
            "app directory {app} resolves outside the repository root {}",
            root.display()
        )),
        "{what}: {stderr}"
    );
}

#[test]
fn render_refuses_an_app_directory_symlinked_out_of_the_repository() {
    let fixture = escape_fixture();
    let repo = &fixture.repo;
    std::os::unix::fs::symlink(&fixture.outside, repo.join("app")).expect("symlink app");
    let output = capstan()
        .arg("render")
        .arg(repo.join("app"))
        .output()
        .expect("run capstan render");
    assert_refused(&output, "render r/app", "app", repo);

    // Relative, from inside the repository, and with `..` written in the path.
    let output = capstan()
        .current_dir(repo.join("real"))
        .args(["render", "../app"])
        .output()
        .expect("run capstan render");
    assert_refused(&output, "render ../app", "app", repo);

    // A link to another Git repository is not a repository root of its own.
    std::os::unix::fs::symlink(
        fixture.outside.parent().expect("parent").join("other-repo"),
        repo.join("other"),
    )
    .expect("symlink other");
    let output = capstan()
        .arg("render")
        .arg(repo.join("other"))
        .output()
        .expect("run capstan render");
    assert_refused(&output, "render r/other", "other", repo);

    // A symlink that stays inside the repository is followed.
    std::os::unix::fs::symlink("real", repo.join("linked")).expect("symlink inside");
    let output = capstan()
        .arg("render")
        .arg(repo.join("linked"))
        .output()
        .expect("run capstan render");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("# Source: real/cm.yaml") && stdout.contains("where: inside"),
        "{stdout}"
    );
}
