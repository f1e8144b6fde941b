//! Shared setup for controller tests: CRDs installed on the shared control plane, a Git repository
//! on a real `git daemon`, and a controller running in-process, scoped to the test's namespace.
#![allow(dead_code, unused_imports)]

use std::path::PathBuf;
use std::time::Duration;

use capstan_cluster::ConnectOptions;
use capstan_controller::api::{Application, GitRepository};
use capstan_controller::{LeaderElection, Options};
use capstan_test_support::git_servers::{GitDaemon, GitRepos, Signing};
use capstan_test_support::{TestNamespace, cluster, eventually, kubeconfig};
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

pub use capstan_test_support::{client, kubectl};

/// Applies the controller's CRDs (idempotent; every test does it) and waits until they serve.
pub async fn install_crds() {
    let cluster = cluster().await;
    for crd in capstan_controller::api::crds() {
        let object: DynamicObject =
            serde_json::from_value(serde_json::to_value(&crd).expect("crd json")).expect("crd");
        cluster
            .apply(&object, capstan_cluster::Ownership::Force, false)
            .await
            .expect("apply CRD");
    }
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client().await);
    for name in ["gitrepositories.capstan.dev", "applications.capstan.dev"] {
        eventually(Duration::from_secs(30), "CRD established", || {
            let crds = crds.clone();
            async move {
                let crd = crds.get(name).await.map_err(|e| e.to_string())?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if established {
                    Ok(())
                } else {
                    Err("not established".into())
                }
            }
        })
        .await;
    }
}

/// A controller running in this process, stopped (gracefully) on drop or with [`stop`], or killed
/// with [`kill`].
pub struct RunningController {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<Result<(), capstan_controller::ControllerError>>,
    pub addr: Option<std::net::SocketAddr>,
    _cache: tempfile::TempDir,
}

impl RunningController {
    pub async fn stop(mut self) -> Result<(), capstan_controller::ControllerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("controller task")
    }

    /// Like a SIGKILL: every future is dropped wherever it is.
    pub fn kill(self) {
        self.task.abort();
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct ControllerSetup {
    pub namespace: String,
    pub leader: Option<LeaderElection>,
    pub identity: String,
    pub listen: bool,
    pub receivers: Vec<capstan_controller::server::NamedReceiver>,
}

impl ControllerSetup {
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.into(),
            leader: None,
            identity: format!("test-{namespace}"),
            listen: false,
            receivers: Vec::new(),
        }
    }

    pub fn start(self) -> RunningController {
        let cache = tempfile::tempdir().expect("cache dir");
        let listen = self.listen.then(|| {
            std::net::SocketAddr::from((
                [127, 0, 0, 1],
                capstan_test_support::git_servers::free_port(),
            ))
        });
        let mut options = Options::new(cache.path().to_path_buf());
        options.connect = ConnectOptions {
            kubeconfig: Some(kubeconfig().to_path_buf()),
            ..Default::default()
        };
        options.namespace = Some(self.namespace.clone());
        options.leader_election = self.leader;
        options.identity = self.identity;
        options.listen = listen;
        options.receivers = self.receivers;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(capstan_controller::run(options, async move {
            let _ = stopped.await;
        }));
        RunningController {
            stop: Some(stop),
            task,
            addr: listen,
            _cache: cache,
        }
    }
}

/// A Git repository named `repo` served by a git daemon.
pub struct Repo {
    pub repos: GitRepos,
    pub daemon: Option<GitDaemon>,
    pub name: String,
}

impl Repo {
    pub fn new(name: &str, files: &[(&str, &str)]) -> Self {
        let repos = GitRepos::new();
        repos.create(name);
        repos.commit(name, "main", files, "first", Signing::None);
        let daemon = GitDaemon::start(&repos.served_root());
        Self {
            repos,
            daemon: Some(daemon),
            name: name.into(),
        }
    }

    pub fn url(&self) -> String {
        self.daemon
            .as_ref()
            .expect("daemon running")
            .url(&self.name)
    }

    pub fn push(&self, files: &[(&str, &str)], message: &str) -> String {
        self.repos
            .commit(&self.name, "main", files, message, Signing::None)
    }
}

pub fn config_map(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: {value}\n")
}

pub async fn create_repo(ns: &str, name: &str, url: &str, interval: &str) {
    let api: Api<GitRepository> = Api::namespaced(client().await, ns);
    let repo: GitRepository = serde_json::from_value(json!({
        "apiVersion": "capstan.dev/v1alpha1", "kind": "GitRepository",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"url": url, "interval": interval, "ref": {"branch": "main"}}
    }))
    .expect("GitRepository");
    api.create(&PostParams::default(), &repo)
        .await
        .expect("create GitRepository");
}

pub async fn create_app(ns: &str, name: &str, spec: Value) -> Application {
    let api: Api<Application> = Api::namespaced(client().await, ns);
    let app: Application = serde_json::from_value(json!({
        "apiVersion": "capstan.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec
    }))
    .expect("Application");
    api.create(&PostParams::default(), &app)
        .await
        .expect("create Application")
}

pub async fn get_app(ns: &str, name: &str) -> Application {
    let api: Api<Application> = Api::namespaced(client().await, ns);
    api.get(name).await.expect("get Application")
}

pub async fn patch_app(ns: &str, name: &str, patch: Value) {
    let api: Api<Application> = Api::namespaced(client().await, ns);
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch Application");
}

pub fn condition(app: &Application, type_: &str) -> Option<(String, String, String)> {
    app.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Waits until the app's Ready condition has `status` (and, when given, `reason`).
pub async fn wait_ready(
    ns: &str,
    name: &str,
    status: &str,
    reason: Option<&str>,
    timeout: Duration,
) -> Application {
    eventually(
        timeout,
        &format!("Application {name} Ready={status} {reason:?}"),
        || async {
            let app = get_app(ns, name).await;
            match condition(&app, "Ready") {
                Some((s, r, _)) if s == status && reason.is_none_or(|want| want == r) => Ok(app),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

pub async fn config_map_value(ns: &str, name: &str) -> Option<String> {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client().await, ns);
    api.get_opt(name)
        .await
        .expect("get ConfigMap")
        .and_then(|cm| cm.data)
        .and_then(|d| d.get("key").cloned())
}

/// Changes a ConfigMap the way a person would, with `kubectl patch` (merge patch), optionally under
/// another field manager.
pub fn patch_config_map(ns: &str, name: &str, manager: Option<&str>, patch: &str) {
    let mut command = kubectl();
    command.args([
        "-n",
        ns,
        "patch",
        "configmap",
        name,
        "--type=merge",
        "-p",
        patch,
    ]);
    if let Some(manager) = manager {
        command.arg(format!("--field-manager={manager}"));
    }
    let out = command.output().expect("kubectl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until ConfigMap `name` holds `value` under `key`.
pub async fn wait_config_map(ns: &str, name: &str, value: &str, timeout: Duration) {
    eventually(timeout, &format!("ConfigMap {name} = {value}"), || async {
        match config_map_value(ns, name).await {
            Some(v) if v == value => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

pub async fn namespace(prefix: &str) -> TestNamespace {
    install_crds().await;
    TestNamespace::create(&client().await, prefix).await
}

pub fn workspace_file(path: &str) -> PathBuf {
    capstan_test_support::workspace_root().join(path)
}
