//! The Capstan controller: keeps clusters equal to Git without anyone running commands.
//!
//! ```text
//! GitRepository ──sources──▶ Artifacts ──(new revision)──▶ Application ──apps──▶ Engine (plan/sync/health)
//!        ▲ interval, webhook                                   ▲ interval, spec, manual, dependency, drift
//! ```
//!
//! Two kube-runtime controllers share one [`Context`]: [`sources`] fetches each GitRepository once
//! and publishes its artifact; [`apps`] renders and syncs each Application through the same engine
//! the CLI uses. [`drift`] watches owned objects' metadata and wakes their app. [`server`] serves
//! health, metrics and webhooks. With leader election, only the Lease holder runs the controllers.

pub mod apps;
pub mod conditions;
pub mod decide;
pub mod drift;
pub mod install;
pub mod kube_api;
pub mod metrics;
pub mod ops;
pub mod server;
pub mod sources;
pub mod status;

/// The custom resources (`GitRepository`, `Application`) live with the one app spec in capstan-api.
pub use capstan_api::crd as api;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capstan_cluster::{Cluster, ConnectOptions};
use capstan_engine::Engine;
use capstan_engine::render::{Limits, RenderEngine, Tools};
use capstan_source::{CacheOptions, SourceCache};
use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::utils::Predicate;
use kube::runtime::{WatchStreamExt, predicates, reflector, watcher};
use tokio::sync::mpsc;

use api::{Application, GitRepository};
use apps::Dependencies;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A request of the controller's own plumbing (its CRs, Secrets, status, Events) failed.
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Cluster(#[from] capstan_cluster::ClusterError),
    #[error(transparent)]
    Source(#[from] capstan_source::SourceError),
    /// A GitRepository's fetch failed; its status says why.
    #[error("GitRepository {repository}: {source}")]
    Fetch {
        repository: String,
        #[source]
        source: Box<ControllerError>,
    },
    #[error("{what}: did not finish within {after:?}")]
    Timeout { what: String, after: Duration },
    #[error("Secret {secret} not found")]
    MissingSecret { secret: String },
    #[error("Secret {secret}: {message}")]
    InvalidSecret { secret: String, message: String },
    #[error("{field}: {message}")]
    InvalidSpec { field: String, message: String },
    /// An Application spec the API server admitted but the stages cannot use.
    #[error(transparent)]
    Spec(#[from] capstan_engine::SpecError),
    /// The engine failed for an Application (plan, sync, inventory or health).
    #[error("Application {app}: {source}")]
    Engine {
        app: String,
        #[source]
        source: Box<capstan_engine::EngineError>,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("serving on {addr}: {source}")]
    Serve {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("leader election: {source}")]
    Leader {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("leader election: the lease manager stopped")]
    LeaseManagerStopped,
    #[error("lost the leader lease; stopping so that only one replica writes")]
    LostLeadership,
}

impl ControllerError {
    /// A short, stable name of the error's kind: the `error` label of the reconcile error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ControllerError::Kube { .. } => "kube",
            ControllerError::Cluster(_) => "cluster",
            ControllerError::Source(_) => "source",
            ControllerError::Fetch { .. } => "fetch",
            ControllerError::Timeout { .. } => "timeout",
            ControllerError::MissingSecret { .. } | ControllerError::InvalidSecret { .. } => {
                "secret"
            }
            ControllerError::InvalidSpec { .. } | ControllerError::Spec(_) => "spec",
            ControllerError::Engine { source, .. } => match source.as_ref() {
                capstan_engine::EngineError::Plan { .. } => "plan",
                capstan_engine::EngineError::Apply { .. } => "apply",
                capstan_engine::EngineError::Inventory(_) => "inventory",
                capstan_engine::EngineError::Unhealthy { .. } => "health",
                _ => "engine",
            },
            ControllerError::Io { .. } => "io",
            ControllerError::Serve { .. } => "serve",
            ControllerError::Leader { .. }
            | ControllerError::LeaseManagerStopped
            | ControllerError::LostLeadership => "leader",
        }
    }
}

/// How to run the controller.
#[derive(Clone, Debug)]
pub struct Options {
    pub connect: ConnectOptions,
    /// Only GitRepositories and Applications in this namespace (tests, tenants); all when `None`.
    pub namespace: Option<String>,
    /// Mirrors and checkouts.
    pub cache_dir: PathBuf,
    /// Health, readiness, metrics and webhooks; not served when `None`.
    pub listen: Option<SocketAddr>,
    pub leader_election: Option<LeaderElection>,
    /// Reconciliations in parallel per controller.
    pub concurrency: u16,
    /// Webhook receivers by name.
    pub receivers: Vec<server::NamedReceiver>,
    /// This replica's name in Events and the Lease.
    pub identity: String,
}

#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub namespace: String,
    pub lease_name: String,
    pub lease_duration: Duration,
}

impl Options {
    pub fn new(cache_dir: PathBuf) -> Self {
        Self {
            connect: ConnectOptions::default(),
            namespace: None,
            cache_dir,
            listen: None,
            leader_election: None,
            concurrency: 16,
            receivers: Vec::new(),
            identity: std::env::var("POD_NAME")
                .unwrap_or_else(|_| format!("capstan-{}", std::process::id())),
        }
    }
}

/// Everything reconciliations share.
pub struct Context {
    pub kube: kube_api::KubeApi,
    pub cluster: Cluster,
    engine: Arc<Engine>,
    /// Engines that impersonate an app's service account, by user name.
    impersonating: Mutex<HashMap<String, Arc<Engine>>>,
    pub sources: SourceCache,
    pub artifacts: sources::Artifacts,
    pub renderer: Arc<RenderEngine>,
    pub metrics: metrics::Metrics,
    pub drift: drift::DriftWatcher,
    credentials_dir: PathBuf,
    app_trigger: mpsc::UnboundedSender<ObjectRef<Application>>,
    repo_trigger: mpsc::UnboundedSender<ObjectRef<GitRepository>>,
    apps: Store<Application>,
    repos: Store<GitRepository>,
    /// Consecutive failures per object, for the retry backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Digest of the rendered objects each app last reached Ready with (in memory: a restarted
    /// controller plans every app once).
    synced_inputs: Mutex<HashMap<String, u64>>,
}

impl Context {
    /// The engine that applies `app`: the controller's own identity, or the app's service account.
    fn engine_for(&self, app: &Application) -> Result<Arc<Engine>, ControllerError> {
        let Some(account) = &app.spec.service_account_name else {
            return Ok(self.engine.clone());
        };
        let user = format!(
            "system:serviceaccount:{}:{account}",
            app.namespace().unwrap_or_default()
        );
        let mut engines = self.impersonating.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(engine) = engines.get(&user) {
            return Ok(engine.clone());
        }
        let engine = Arc::new(Engine::new(self.cluster.impersonate(&user)?));
        engines.insert(user, engine.clone());
        Ok(engine)
    }

    /// Wakes the apps of a GitRepository that has a new commit. In a monorepo most apps' directories
    /// did not change: those whose directory did are woken first, the others a moment later, so a
    /// push is not queued behind hundreds of "same objects, new revision" status writes. (An app
    /// whose inputs live outside its directory, e.g. a kustomize base, is still woken, only later.)
    async fn trigger_apps_of_source(
        &self,
        namespace: &str,
        name: &str,
        old_checkout: Option<PathBuf>,
        new_checkout: PathBuf,
    ) {
        let apps: Vec<(ObjectRef<Application>, String)> = self
            .apps
            .state()
            .iter()
            .filter(|app| {
                app.namespace().as_deref() == Some(namespace) && app.spec.source_ref.name == name
            })
            .map(|app| (ObjectRef::from_obj(app.as_ref()), app.spec.path.clone()))
            .collect();
        let Some(old) = old_checkout else {
            for (app, _) in apps {
                let _ = self.app_trigger.send(app);
            }
            return;
        };
        let split = tokio::task::spawn_blocking(move || {
            apps.into_iter().partition::<Vec<_>, _>(|(_, path)| {
                sources::directory_changed(&old, &new_checkout, path)
            })
        })
        .await;
        let (first, later) = match split {
            Ok(split) => split,
            Err(_) => return,
        };
        for (app, _) in first {
            let _ = self.app_trigger.send(app);
        }
        if later.is_empty() {
            return;
        }
        let trigger = self.app_trigger.clone();
        tokio::spawn(async move {
            tokio::time::sleep(LATER_APPS_DELAY).await;
            for (app, _) in later {
                let _ = trigger.send(app);
            }
        });
    }

    fn trigger_dependents(&self, app: &Application) {
        for dependent in apps::dependents(app, &self.apps.state()) {
            let _ = self.app_trigger.send(dependent);
        }
    }

    /// Asks for an immediate fetch of these GitRepositories (webhooks).
    pub fn trigger_sources(&self, repos: Vec<ObjectRef<GitRepository>>) -> usize {
        let count = repos.len();
        for repo in repos {
            let _ = self.repo_trigger.send(repo);
        }
        count
    }

    pub fn repositories(&self) -> Vec<Arc<GitRepository>> {
        self.repos.state()
    }

    fn dependency_state(&self, app: &Application) -> Dependencies {
        let namespace = app.namespace().unwrap_or_default();
        let all = self.apps.state();
        let find = |ns: &str, name: &str| {
            all.iter()
                .find(|a| a.namespace().as_deref() == Some(ns) && a.name_any() == name)
                .cloned()
        };
        let edges = |node: &str| -> Vec<String> {
            let Some((ns, name)) = node.split_once('/') else {
                return Vec::new();
            };
            find(ns, name)
                .map(|a| {
                    a.spec
                        .depends_on
                        .iter()
                        .map(|d| format!("{}/{}", d.namespace.as_deref().unwrap_or(ns), d.name))
                        .collect()
                })
                .unwrap_or_default()
        };
        let start = format!("{namespace}/{}", app.name_any());
        if let Some(cycle) = apps::find_cycle(&start, &edges)
            && cycle.first() == cycle.last()
            && cycle.contains(&start)
        {
            return Dependencies::Cycle(cycle.join(" → "));
        }
        for dependency in &app.spec.depends_on {
            let ns = dependency.namespace.as_deref().unwrap_or(&namespace);
            let ready = find(ns, &dependency.name).is_some_and(|d| {
                d.status
                    .as_ref()
                    .is_some_and(|s| conditions::is_ready(&s.conditions, d.metadata.generation))
            });
            if !ready {
                return Dependencies::Waiting(format!("Application {ns}/{}", dependency.name));
            }
        }
        Dependencies::Ready
    }

    fn refresh_app_counts(&self) {
        let mut counts: HashMap<(String, String), i64> = HashMap::new();
        for app in self.apps.state() {
            let status = app.status.clone().unwrap_or_default();
            let sync = status.sync.map(|s| s.status).unwrap_or_default();
            let health = status.health.map(|h| h.status).unwrap_or_default();
            *counts
                .entry((sync.to_string(), health.to_string()))
                .or_default() += 1;
        }
        self.metrics.set_app_counts(counts);
    }

    /// Exponential backoff per object from the retry policy; `reset` after a success.
    fn backoff(&self, key: String, retry: &api::Retry) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(key).or_default();
        *count = count.saturating_add(1);
        retry.backoff_after(*count)
    }

    fn same_inputs(&self, app: &str, digest: u64) -> bool {
        self.synced_inputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(app)
            == Some(&digest)
    }

    fn remember_inputs(&self, app: &str, digest: u64) {
        self.synced_inputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(app.to_string(), digest);
    }

    fn forget_inputs(&self, app: &str) {
        self.synced_inputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(app);
    }

    fn reset_backoff(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// How long apps whose directory did not change wait behind those whose did.
const LATER_APPS_DELAY: Duration = Duration::from_secs(1);

/// RFC 3339 now, for status fields.
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Runs the controller until `shutdown` resolves (then it finishes running reconciliations) or the
/// leader lease is lost.
pub async fn run(
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ControllerError> {
    let metrics = metrics::Metrics::new();
    let mut connect = options.connect.clone();
    connect.observe_request = Some(metrics.request_observer());
    let cluster = Cluster::connect(&connect).await?;
    let kube = kube_api::KubeApi::new(cluster.client(), Some(options.identity.clone()));

    let (app_tx, app_rx) = mpsc::unbounded_channel();
    let (repo_tx, repo_rx) = mpsc::unbounded_channel();
    let namespace = options.namespace.as_deref();
    let (apps_reader, apps_writer) = reflector::store();
    let (repos_reader, repos_writer) = reflector::store();
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let context = Arc::new(Context {
        kube: kube.clone(),
        engine: Arc::new(Engine::new(cluster.clone())),
        impersonating: Mutex::default(),
        sources: SourceCache::new(CacheOptions {
            max_checkouts: 4096,
            ..CacheOptions::new(options.cache_dir.join("source"))
        }),
        artifacts: sources::Artifacts::default(),
        renderer: Arc::new(RenderEngine::new(Tools::from_env(), Limits::default())),
        metrics: metrics.clone(),
        drift: drift::DriftWatcher::new(cluster.clone(), options.namespace.clone(), app_tx.clone()),
        cluster,
        credentials_dir: options.cache_dir.join("credentials"),
        app_trigger: app_tx,
        repo_trigger: repo_tx,
        apps: apps_reader.clone(),
        repos: repos_reader.clone(),
        failures: Mutex::default(),
        synced_inputs: Mutex::default(),
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = match options.listen {
        Some(addr) => Some(
            server::serve(
                addr,
                server::State {
                    metrics: metrics.clone(),
                    ready: ready.clone(),
                    context: context.clone(),
                    receivers: Arc::new(options.receivers.clone()),
                },
                stop_rx.clone(),
            )
            .await?,
        ),
        None => None,
    };

    // Leader election: wait for the lease before any write; losing it stops this replica.
    let mut leadership = None;
    if let Some(election) = &options.leader_election {
        let manager = kube_lease_manager::LeaseManagerBuilder::new(
            context.kube.client(),
            election.lease_name.clone(),
        )
        .with_namespace(election.namespace.clone())
        .with_identity(options.identity.clone())
        .with_duration(election.lease_duration.as_secs().max(2))
        .with_grace(1)
        .build()
        .await
        .map_err(|e| ControllerError::Leader {
            source: Box::new(e),
        })?;
        let (mut channel, task) = manager.watch().await;
        let mut shutdown_requested = Box::pin(shutdown_signal_clone(stop_rx.clone()));
        tracing::info!(identity = %options.identity, "waiting for the leader lease");
        loop {
            if *channel.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = channel.changed() => {
                    if changed.is_err() {
                        return Err(ControllerError::LeaseManagerStopped);
                    }
                }
                _ = &mut shutdown_requested => return Ok(()),
            }
        }
        tracing::info!(identity = %options.identity, "acquired the leader lease");
        metrics.leader.set(1);
        leadership = Some((channel, task));
    }

    let apps_api = context.kube.apps(namespace);
    let repos_api = context.kube.repos(namespace);
    let app_events = reflector(apps_writer, watcher(apps_api, watcher::Config::default()))
        .default_backoff()
        .applied_objects()
        // Status writes change neither generation nor annotations: they do not wake the app again.
        .predicate_filter(
            predicates::generation.combine(predicates::annotations),
            Default::default(),
        );
    let repo_events = reflector(repos_writer, watcher(repos_api, watcher::Config::default()))
        .default_backoff()
        .applied_objects()
        .predicate_filter(predicates::generation, Default::default());

    let (graceful_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let graceful = |tx: &tokio::sync::broadcast::Sender<()>| {
        let mut rx = tx.subscribe();
        async move {
            let _ = rx.recv().await;
        }
    };
    let config = ControllerConfig::default()
        .concurrency(options.concurrency)
        .debounce(Duration::from_millis(100));
    let repo_controller = Controller::for_stream(repo_events, repos_reader)
        .with_config(config.clone())
        .reconcile_on(tokio_stream_from(repo_rx))
        .graceful_shutdown_on(graceful(&graceful_tx))
        .run(sources::reconcile, repo_error_policy, context.clone())
        .for_each(|_| async {});
    let app_controller = Controller::for_stream(app_events, apps_reader)
        .with_config(config)
        .reconcile_on(tokio_stream_from(app_rx))
        .graceful_shutdown_on(graceful(&graceful_tx))
        .run(apps::reconcile, app_error_policy, context.clone())
        .for_each(|_| async {});
    ready.store(true, std::sync::atomic::Ordering::SeqCst);

    let controllers = async {
        tokio::join!(repo_controller, app_controller);
    };
    let lost = async {
        match &mut leadership {
            Some((channel, _)) => loop {
                if channel.changed().await.is_err() || !*channel.borrow() {
                    return;
                }
            },
            None => std::future::pending().await,
        }
    };
    tokio::pin!(controllers);
    let result = tokio::select! {
        _ = shutdown => {
            tracing::info!("shutting down: finishing running reconciliations");
            let _ = graceful_tx.send(());
            controllers.await;
            Ok(())
        }
        _ = lost => {
            metrics.leader.set(0);
            let _ = graceful_tx.send(());
            controllers.await;
            Err(ControllerError::LostLeadership)
        }
        _ = &mut controllers => Ok(()),
    };
    ready.store(false, std::sync::atomic::Ordering::SeqCst);
    let _ = stop_tx.send(true);
    if let Some(server) = server {
        let _ = server.await;
    }
    if let Some((channel, task)) = leadership {
        // Dropping the channel makes the manager task finish; then give the lease back.
        drop(channel);
        if let Ok(Ok(manager)) = task.await {
            let _ = manager.release().await;
        }
    }
    result
}

async fn shutdown_signal_clone(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

fn repo_error_policy(
    repo: Arc<GitRepository>,
    error: &ControllerError,
    ctx: Arc<Context>,
) -> Action {
    tracing::warn!(repository = %repo.name_any(), %error, "GitRepository reconcile failed");
    let key = format!(
        "repo/{}/{}",
        repo.namespace().unwrap_or_default(),
        repo.name_any()
    );
    let retry = api::Retry {
        backoff: Duration::from_secs(2),
        factor: 2,
        max_backoff: Duration::from_secs(300),
    };
    Action::requeue(ctx.backoff(key, &retry))
}

fn app_error_policy(app: Arc<Application>, error: &ControllerError, ctx: Arc<Context>) -> Action {
    tracing::warn!(app = %app.name_any(), %error, "Application reconcile failed");
    let key = format!(
        "app/{}/{}",
        app.namespace().unwrap_or_default(),
        app.name_any()
    );
    Action::requeue(ctx.backoff(key, &app.spec.sync_policy.retry))
}
