//! The `capstan controller` process and the `capstan app` / `capstan source` / `capstan install`
//! commands, as a user runs them: the binary against the real control plane and a real git daemon.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use capstan_test_support::git_servers::{GitDaemon, GitRepos, Signing, free_port};
use capstan_test_support::{TestNamespace, client, eventually, kubeconfig, kubectl};

use common::{capstan, capstan_on_cluster};

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "capstan failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn kubectl_apply(yaml: &str) {
    use std::io::Write;
    let mut child = kubectl()
        .args(["apply", "--server-side", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write");
    assert!(child.wait().expect("kubectl").success());
}

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_binary_and_app_commands() {
    // The CRDs, from `capstan install`, which must equal the committed deploy/install.yaml.
    let rendered = stdout(&capstan_on_cluster(&["install"]));
    let committed =
        std::fs::read_to_string(capstan_test_support::workspace_root().join("deploy/install.yaml"))
            .expect("deploy/install.yaml");
    assert_eq!(
        rendered, committed,
        "deploy/install.yaml is stale: run `capstan install > deploy/install.yaml`"
    );
    let crds: String = rendered
        .split("---\n")
        .filter(|doc| doc.contains("kind: CustomResourceDefinition"))
        .map(|doc| format!("---\n{doc}"))
        .collect();
    kubectl_apply(&crds);
    let out = kubectl()
        .args([
            "wait",
            "--for=condition=Established",
            "crd/applications.capstan.dev",
            "crd/gitrepositories.capstan.dev",
            "--timeout=30s",
        ])
        .output()
        .expect("kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let ns = TestNamespace::create(&client().await, "cli-ctl").await;
    let ns = ns.name().to_string();
    let repos = GitRepos::new();
    repos.create("site");
    let first = repos.commit(
        "site",
        "main",
        &[(
            "app/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: page\ndata:\n  body: v1\n",
        )],
        "v1",
        Signing::None,
    );
    let daemon = GitDaemon::start(&repos.served_root());

    let port = free_port();
    let cache = tempfile::tempdir().expect("cache");
    let controller = Controller(
        capstan()
            .args([
                "controller",
                "--namespace",
                &ns,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--cache-dir")
            .arg(cache.path())
            .arg("--kubeconfig")
            .arg(kubeconfig())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start controller"),
    );
    kubectl_apply(&format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: GitRepository\nmetadata:\n  name: site\n  namespace: {ns}\nspec:\n  url: {}\n  interval: 1s\n---\napiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata:\n  name: site\n  namespace: {ns}\nspec:\n  sourceRef:\n    name: site\n  path: app\n  destination:\n    namespace: {ns}\n  syncPolicy:\n    automated: true\n    prune: true\n",
        daemon.url("site")
    ));

    let list = eventually(Duration::from_secs(60), "app list shows Synced", || {
        let ns = ns.clone();
        async move {
            let text = stdout(&capstan_on_cluster(&["app", "list", "-n", &ns]));
            if text.contains("Synced") && text.contains("Current") {
                Ok(text)
            } else {
                Err(text)
            }
        }
    })
    .await;
    assert!(list.contains(&format!("main@{}", &first[..12])), "{list}");
    let sources = stdout(&capstan_on_cluster(&["source", "list", "-n", &ns]));
    assert!(
        sources.contains("site") && sources.contains("True"),
        "{sources}"
    );
    let get = stdout(&capstan_on_cluster(&["app", "get", "site", "-n", &ns]));
    assert!(
        get.contains("inventory:   1 objects (1 ConfigMap)"),
        "{get}"
    );

    let second = repos.commit(
        "site",
        "main",
        &[(
            "app/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: page\ndata:\n  body: v2\n",
        )],
        "v2",
        Signing::None,
    );
    eventually(Duration::from_secs(30), "v2 in history", || {
        let (ns, second) = (ns.clone(), second.clone());
        async move {
            let text = stdout(&capstan_on_cluster(&["app", "history", "site", "-n", &ns]));
            if text.contains(&second) {
                Ok(())
            } else {
                Err(text)
            }
        }
    })
    .await;

    // Rollback to the first commit by its short id, then unpin.
    let rolled = stdout(&capstan_on_cluster(&[
        "app",
        "rollback",
        "site",
        "-n",
        &ns,
        "--to",
        &first[..10],
    ]));
    assert!(rolled.contains(&first), "{rolled}");
    let refused = capstan_on_cluster(&[
        "app",
        "rollback",
        "site",
        "-n",
        &ns,
        "--to",
        "deadbeefdeadbeef",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not in the history"));
    let body = || {
        let ns = ns.clone();
        async move {
            let out = kubectl()
                .args([
                    "-n",
                    &ns,
                    "get",
                    "configmap",
                    "page",
                    "-o",
                    "jsonpath={.data.body}",
                ])
                .output()
                .expect("kubectl");
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    eventually(Duration::from_secs(30), "rolled back to v1", || async {
        let value = body().await;
        if value == "v1" { Ok(()) } else { Err(value) }
    })
    .await;
    // `app sync` waits until the controller handled the request and prints the app.
    let synced = stdout(&capstan_on_cluster(&["app", "sync", "site", "-n", &ns]));
    assert!(
        synced.contains("pinned:") && synced.contains(&first),
        "{synced}"
    );
    stdout(&capstan_on_cluster(&["app", "unpin", "site", "-n", &ns]));
    eventually(Duration::from_secs(30), "back on v2", || async {
        let value = body().await;
        if value == "v2" { Ok(()) } else { Err(value) }
    })
    .await;
    stdout(&capstan_on_cluster(&["app", "suspend", "site", "-n", &ns]));
    let list = stdout(&capstan_on_cluster(&["app", "list", "-n", &ns]));
    assert!(list.contains("Susp."), "{list}");

    // SIGTERM: a graceful stop with exit code 0 and JSON logs.
    let mut controller = controller;
    let pid = controller.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let mut child = std::mem::replace(
        &mut controller.0,
        Command::new("true").spawn().expect("true"),
    );
    let status = child.wait().expect("wait");
    let mut logs = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut logs)
        .expect("logs");
    assert!(status.success(), "controller exit {status:?}: {logs}");
    let first_line = logs.lines().next().unwrap_or_default();
    assert!(
        serde_json::from_str::<serde_json::Value>(first_line).is_ok(),
        "not JSON: {first_line}"
    );
}
