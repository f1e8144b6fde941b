//! Test harness for integration tests against a real control plane (see `testenv/`).
//!
//! One environment serves a whole `cargo test` run: every test binary takes a file lock on
//! `target/testenv/`, registers a lease (its pid) and either finds the environment running or starts it
//! with `testenv/up`. A detached `testenv/reap` stops it once no leased process has been alive for a
//! grace period, so the last test binary does not need to know it is the last.
//!
//! Settings:
//! - `CAPSTAN_TEST_KUBECONFIG=<path>`: use that cluster, start nothing.
//! - `KUBECONFIG` is reused only when its current-context is `capstan-testenv` (made by `testenv/up`),
//!   so tests never land in whatever cluster a developer's shell points at.
//! - `CAPSTAN_TESTENV_KEEP=1`: leave the environment running for the next run.
//! - `CAPSTAN_TEST_KEEP_NAMESPACES=1`: do not delete test namespaces (for debugging).
//!
//! Each test gets its own `kube::Client` (clients are bound to the tokio runtime that made them, and
//! every `#[tokio::test]` has its own) and its own namespace, deleted when the [`TestNamespace`] drops.

pub mod git_servers;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use capstan_cluster::{Cluster, ConnectOptions};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};

const REAP_GRACE_SECONDS: &str = "15";
const TESTENV_CONTEXT: &str = "current-context: capstan-testenv";

/// The workspace root, found from this crate's location (crates/test-support).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/test-support sits two levels below the workspace root")
        .to_path_buf()
}

/// The kubeconfig of the environment this test run uses, starting it on first use.
/// Panics with the reason when no environment can be had: a test cannot go on without one.
pub fn kubeconfig() -> &'static Path {
    static KUBECONFIG: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match KUBECONFIG.get_or_init(acquire_environment) {
        Ok(path) => path,
        Err(reason) => panic!("no test control plane: {reason}"),
    }
}

fn acquire_environment() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("CAPSTAN_TEST_KUBECONFIG") {
        return Ok(PathBuf::from(path));
    }
    if let Some(path) = std::env::var_os("KUBECONFIG").map(PathBuf::from)
        && fs::read_to_string(&path).is_ok_and(|text| text.contains(TESTENV_CONTEXT))
    {
        return Ok(path);
    }
    let root = workspace_root();
    let state = root.join("target").join("testenv");
    let leases = state.join("leases");
    fs::create_dir_all(&leases).map_err(|e| format!("creating {}: {e}", leases.display()))?;

    // The lock orders us against other test binaries and against the reaper deciding to stop.
    let lock = File::create(state.join("lock")).map_err(|e| format!("lock file: {e}"))?;
    lock.lock()
        .map_err(|e| format!("locking {}: {e}", state.display()))?;
    fs::write(leases.join(std::process::id().to_string()), "")
        .map_err(|e| format!("writing lease: {e}"))?;

    let env_dir = state.join("env");
    let kubeconfig = env_dir.join("kubeconfig");
    if kubeconfig.exists() && environment_alive(&env_dir) {
        return Ok(kubeconfig);
    }
    if env_dir.exists() {
        // Left over from a run that was killed: clear it so `up` can use the directory.
        let _ = Command::new(root.join("testenv/down"))
            .arg(&env_dir)
            .status();
    }

    let log_path = state.join("up.log");
    let log = File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let output = Command::new(root.join("testenv/up"))
        .env("CAPSTAN_TESTENV_DIR", &env_dir)
        .stdin(Stdio::null())
        .stderr(log)
        .output()
        .map_err(|e| format!("running testenv/up: {e}"))?;
    if !output.status.success() {
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        return Err(format!("testenv/up failed:\n{log}"));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let path = stdout
        .lines()
        .find_map(|line| line.strip_prefix("KUBECONFIG="))
        .ok_or_else(|| format!("testenv/up printed no KUBECONFIG= line: {stdout}"))?;

    if std::env::var_os("CAPSTAN_TESTENV_KEEP").is_none() {
        use std::os::unix::process::CommandExt;
        let reap_log = File::create(state.join("reap.log")).map_err(|e| e.to_string())?;
        Command::new(root.join("testenv/reap"))
            .args([&state, &env_dir])
            .arg(REAP_GRACE_SECONDS)
            .stdin(Stdio::null())
            .stdout(reap_log.try_clone().map_err(|e| e.to_string())?)
            .stderr(reap_log)
            // Its own process group: it must outlive this test binary and cargo's signals.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("starting testenv/reap: {e}"))?;
    }
    Ok(PathBuf::from(path))
}

/// Every process `testenv/up` recorded still runs.
fn environment_alive(env_dir: &Path) -> bool {
    let Ok(pids) = fs::read_to_string(env_dir.join("pids")) else {
        return false;
    };
    let mut any = false;
    for line in pids.lines() {
        let mut fields = line.split_whitespace();
        let (Some(pid), Some(_name), Some(binary)) = (fields.next(), fields.next(), fields.next())
        else {
            return false;
        };
        let exe = fs::read_link(format!("/proc/{pid}/exe"));
        if exe.map(|exe| exe != Path::new(binary)).unwrap_or(true) {
            return false;
        }
        any = true;
    }
    any
}

/// The testenv's kubectl (v1.34, built by `testenv/build`), pointed at the test cluster: for acting as
/// another field manager the way users do (`kubectl scale`, `kubectl edit`).
pub fn kubectl() -> Command {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    let bin = BIN.get_or_init(|| {
        let output = Command::new(workspace_root().join("testenv/build"))
            .stderr(Stdio::null())
            .output()
            .expect("run testenv/build");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let k8s_bin = stdout
            .lines()
            .next()
            .expect("testenv/build prints the kubernetes bin dir");
        Path::new(k8s_bin).join("kubectl")
    });
    let mut command = Command::new(bin);
    command.arg("--kubeconfig").arg(kubeconfig());
    command
}

/// A connection to the test cluster, made in the calling test's runtime.
pub async fn cluster() -> Cluster {
    let options = ConnectOptions {
        kubeconfig: Some(kubeconfig().to_path_buf()),
        context: None,
        connect_timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    Cluster::connect(&options)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test cluster: {e}"))
}

/// A client for the test cluster, made in the calling test's runtime.
pub async fn client() -> Client {
    cluster().await.client()
}

/// A namespace owned by one test; deleted (with everything in it) when dropped, also on panic.
pub struct TestNamespace {
    name: String,
}

impl TestNamespace {
    /// Creates `<prefix>-<random suffix>`, labelled so stray namespaces are easy to find.
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let name = format!("{prefix}-{}", random_suffix());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([("capstan.dev/test".to_string(), prefix.to_string())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("creating test namespace {name}: {e}"));
        Self { name }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if std::env::var_os("CAPSTAN_TEST_KEEP_NAMESPACES").is_some() {
            eprintln!("keeping test namespace {}", self.name);
            return;
        }
        let name = self.name.clone();
        // Drop cannot await, and the test's runtime may be shutting down: delete from a thread with a
        // runtime of its own. The namespace controller removes the contents afterwards.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let namespaces = Api::<Namespace>::all(client().await);
                match namespaces.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
                    Err(e) => Err(format!("deleting namespace {name}: {e}")),
                }
            })
        })
        .join();
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: {e}"),
            Err(_) => eprintln!("warning: namespace cleanup thread panicked"),
        }
    }
}

/// 8 lowercase hex characters, unique enough across parallel tests and runs.
fn random_suffix() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:08x}", hasher.finish() as u32)
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming `what` and the last state.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(value) => return value,
            Err(state) => state,
        };
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last state: {last}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
