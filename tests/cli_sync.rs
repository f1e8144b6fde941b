//! `capstan diff | plan | sync` as a user runs them: the binary against the real control plane (and,
//! for an unresponsive API server, against a loopback listener that never answers).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use capstan_test_support::git_servers::git;
use capstan_test_support::{TestNamespace, client};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use common::{capstan, capstan_on_cluster};

const CANARY: &str = "canary-5b2d07-must-never-be-read";

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A Git repository `r` with `real/` (one ConfigMap) and an app file whose `source.path` is `path`,
/// next to a directory outside it holding a canary manifest.
struct Repository {
    _dirs: [tempfile::TempDir; 2],
    repo: PathBuf,
    outside: PathBuf,
}

impl Repository {
    fn new() -> Self {
        let workspace = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let repo = workspace.path().join("r");
        std::fs::create_dir_all(repo.join("real")).expect("mkdir real");
        git(&repo, &["init", "-q"]);
        std::fs::write(
            repo.join("real/cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: inside}\ndata: {where: inside}\n",
        )
        .expect("write inside manifest");
        let outside = elsewhere.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir outside");
        std::fs::write(
            outside.join("canary.yaml"),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: canary}}\ndata: {{secret: {CANARY}}}\n"
            ),
        )
        .expect("write canary");
        Self {
            _dirs: [workspace, elsewhere],
            repo,
            outside,
        }
    }

    fn app_file(&self, name: &str, namespace: &str, path: &str) -> PathBuf {
        let file = self.repo.join(format!("{name}.capstan.yaml"));
        std::fs::write(
            &file,
            format!(
                "apiVersion: capstan.dev/v1alpha1\nkind: App\nmetadata: {{name: {name}}}\n\
                 spec:\n  source: {{path: {path}}}\n  destination: {{namespace: {namespace}}}\n"
            ),
        )
        .expect("write app file");
        file
    }
}

fn assert_refused(output: &Output, what: &str, app: &str, root: &Path) {
    let all = text(output);
    assert_eq!(output.status.code(), Some(2), "{what}: {all}");
    assert!(!all.contains(CANARY), "{what} read the canary: {all}");
    let root = root.canonicalize().expect("canonical root");
    assert!(
        all.contains(&format!(
            "app directory {app} resolves outside the repository root {}",
            root.display()
        )),
        "{what}: {all}"
    );
}

#[tokio::test]
async fn diff_and_sync_refuse_an_app_directory_symlinked_out_of_the_repository() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "cli-confine").await;
    let fixture = Repository::new();
    let repo = &fixture.repo;
    std::os::unix::fs::symlink(&fixture.outside, repo.join("app")).expect("symlink app");
    let app_file = fixture.app_file("shop", ns.name(), "app");
    let app_file = app_file.to_str().expect("UTF-8 path");
    let app_dir = repo.join("app");
    let app_dir = app_dir.to_str().expect("UTF-8 path");

    let output = capstan_on_cluster(&["diff", "-f", app_file]);
    assert_refused(&output, "diff -f", "app", repo);
    let output = capstan_on_cluster(&["plan", "-f", app_file]);
    assert_refused(&output, "plan -f", "app", repo);
    let output = capstan_on_cluster(&["diff", app_dir, "--app", "shop", "-n", ns.name()]);
    assert_refused(&output, "diff DIR", "app", repo);
    let output = capstan_on_cluster(&["sync", "-f", app_file]);
    assert_refused(&output, "sync -f", "app", repo);
    let output = capstan_on_cluster(&["sync", app_dir, "--app", "shop", "-n", ns.name()]);
    assert_refused(&output, "sync DIR", "app", repo);
    // `..` in the app file's path leaves the repository before any symlink does.
    let dotdot = fixture.app_file("dotdot", ns.name(), "../../outside");
    let output = capstan_on_cluster(&["diff", "-f", dotdot.to_str().expect("UTF-8 path")]);
    let written = format!("{}/../../outside", repo.display());
    assert_refused(&output, "diff -f with ..", &written, repo);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    assert!(
        config_maps.get_opt("canary").await.expect("get").is_none(),
        "nothing from outside was applied"
    );

    // A symlink that stays inside the repository is followed.
    std::os::unix::fs::symlink("real", repo.join("linked")).expect("symlink inside");
    let inside = fixture.app_file("inside", ns.name(), "linked");
    let output = capstan_on_cluster(&["sync", "-f", inside.to_str().expect("UTF-8 path")]);
    assert!(output.status.success(), "{}", text(&output));
    let synced = config_maps.get("inside").await.expect("synced ConfigMap");
    assert_eq!(
        synced.data.and_then(|d| d.get("where").cloned()).as_deref(),
        Some("inside")
    );
}

#[tokio::test]
async fn plan_takes_allow_empty_as_sync_does() {
    let client = client().await;
    let ns = TestNamespace::create(&client, "cli-empty").await;
    let dirs = tempfile::tempdir().expect("tempdir");
    let full = dirs.path().join("full");
    let empty = dirs.path().join("empty");
    std::fs::create_dir_all(&full).expect("mkdir full");
    std::fs::create_dir_all(&empty).expect("mkdir empty");
    std::fs::write(
        full.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: \"1\"}\n",
    )
    .expect("write manifest");
    let app = ["--app", "shop", "-n", ns.name()];
    let path = |dir: &Path| dir.to_str().expect("UTF-8 path").to_owned();
    let run = |args: &[&str]| capstan_on_cluster(args);

    let output = run(&[&["sync", &path(&full)], &app[..]].concat());
    assert!(output.status.success(), "{}", text(&output));

    // Without --allow-empty, plan refuses what sync would refuse.
    let output = run(&[&["plan", &path(&empty), "--prune"], &app[..]].concat());
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("nothing was rendered") && text(&output).contains("--allow-empty"),
        "{}",
        text(&output)
    );

    // With it, the plan shows the prune of everything the app owns, and the plan file it writes is
    // what `sync --allow-empty --plan` applies.
    let plan_file = dirs.path().join("plan.json");
    let output = run(&[
        &[
            "plan",
            &path(&empty),
            "--prune",
            "--allow-empty",
            "--out",
            &path(&plan_file),
        ],
        &app[..],
    ]
    .concat());
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("- delete ConfigMap {}/settings", ns.name())),
        "{stdout}"
    );
    assert!(stdout.contains("1 to prune"), "{stdout}");
    let output = run(&[
        &[
            "sync",
            &path(&empty),
            "--prune",
            "--allow-empty",
            "--plan",
            &path(&plan_file),
        ],
        &app[..],
    ]
    .concat());
    assert!(output.status.success(), "{}", text(&output));
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns.name());
    assert!(
        config_maps
            .get_opt("settings")
            .await
            .expect("get")
            .is_none(),
        "pruned"
    );
}

/// A kubeconfig for `server` that needs nothing else (token auth, no CA).
fn kubeconfig_for(dir: &Path, server: &str) -> PathBuf {
    let file = dir.join("kubeconfig");
    std::fs::write(
        &file,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: \"{server}\", \
             insecure-skip-tls-verify: true}}\nusers:\n- name: u\n  user: {{token: t}}\n\
             contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
        ),
    )
    .expect("write kubeconfig");
    file
}

#[test]
fn an_unresponsive_api_server_is_named_while_waited_for_and_when_given_up() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};

    // A server that accepts connections and never says a word (not even TLS).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for connection in listener.incoming().flatten() {
            held.push(connection);
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let server = format!("https://127.0.0.1:{port}");
    let kubeconfig = kubeconfig_for(dir.path(), &server);
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).expect("mkdir app");
    std::fs::write(
        app.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n",
    )
    .expect("write manifest");

    let timeout = Duration::from_secs(4);
    let started = Instant::now();
    let mut child = capstan()
        .arg("diff")
        .arg(&app)
        .args(["--app", "shop", "-n", "shop", "--connect-timeout", "4s"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run capstan diff");
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .map(|line| (started.elapsed(), line))
            .collect::<Vec<_>>()
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("capstan diff still waits after 60s (connect timeout 4s)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    let lines = reader.join().expect("stderr reader");
    let shown: Vec<String> = lines
        .iter()
        .map(|(at, line)| format!("{at:?} {line}"))
        .collect();
    assert_eq!(status.code(), Some(2), "{shown:#?}");
    let waiting = lines.iter().find(|(_, line)| {
        line.contains(&format!("waiting for the API server at {server}/"))
            && line.contains("connect timeout 4s")
    });
    assert!(
        waiting.is_some_and(|(at, _)| *at < timeout),
        "the wait is announced before the timeout: {shown:#?}"
    );
    let (_, last) = lines.last().expect("an error line");
    assert!(
        last.starts_with("error:") && last.contains(&format!("127.0.0.1:{port}")),
        "the error names the server: {shown:#?}"
    );
    assert!(
        elapsed < timeout + Duration::from_secs(4),
        "gave up within the connect timeout, took {elapsed:?}: {shown:#?}"
    );
}
