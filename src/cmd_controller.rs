//! `capstan controller`, `capstan install` and `capstan app …`: the controller process, its
//! manifests, and the verbs on its Applications (in the style of `flux get` / `argocd app`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use capstan_controller::api::{Application, GitRepository};
use capstan_controller::kube_api::KubeApi;
use capstan_controller::{LeaderElection, Options, ops, server::NamedReceiver};
use clap::{Args, Subcommand};

use crate::cmd_app::fail;
use crate::{ClusterFlags, Output};

#[derive(Args)]
pub struct ControllerFlags {
    /// Only watch GitRepositories and Applications in this namespace (default: all namespaces)
    #[arg(long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Where mirrors and checkouts live
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Serve /healthz, /readyz, /metrics and webhooks here
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Run only while holding the leader Lease (for several replicas)
    #[arg(long)]
    leader_elect: bool,
    #[arg(long, value_name = "NAMESPACE", default_value = "capstan-system")]
    leader_election_namespace: String,
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    lease_duration: u64,
    /// Reconciliations in parallel per controller
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
    /// A webhook receiver: NAME=PROVIDER:SECRET_FILE (github, gitlab, gitea, bitbucket, generic);
    /// served on POST /hook/NAME (repeatable)
    #[arg(long = "webhook", value_name = "NAME=PROVIDER:FILE")]
    webhooks: Vec<String>,
}

pub async fn run_controller(cluster: &ClusterFlags, flags: &ControllerFlags) -> ExitCode {
    let result =
        async {
            let mut options =
                Options::new(flags.cache_dir.clone().unwrap_or_else(|| {
                    capstan_source::cli::default_cache_dir().join("controller")
                }));
            options.connect = cluster.connect_options();
            options.namespace = flags.namespace.clone();
            options.listen = Some(flags.listen);
            options.concurrency = flags.concurrency;
            options.receivers = flags
                .webhooks
                .iter()
                .map(|flag| parse_receiver(flag))
                .collect::<anyhow::Result<_>>()?;
            if flags.leader_elect {
                options.leader_election = Some(LeaderElection {
                    namespace: flags.leader_election_namespace.clone(),
                    lease_name: "capstan-controller".into(),
                    lease_duration: Duration::from_secs(flags.lease_duration),
                });
            }
            capstan_controller::run(options, shutdown_signal()).await?;
            anyhow::Ok(())
        }
        .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}

fn parse_receiver(flag: &str) -> anyhow::Result<NamedReceiver> {
    let invalid = || format!("--webhook {flag:?}: expected NAME=PROVIDER:SECRET_FILE");
    let (name, rest) = flag.split_once('=').with_context(invalid)?;
    let (provider, file) = rest.split_once(':').with_context(invalid)?;
    let secret = std::fs::read_to_string(file)
        .with_context(|| format!("--webhook {name}: reading the secret file {file}"))?;
    let provider = provider
        .parse()
        .map_err(|_| anyhow::anyhow!("--webhook {name}: unknown provider {provider:?} (github, gitlab, gitea, bitbucket, generic)"))?;
    Ok(NamedReceiver {
        name: name.to_string(),
        config: capstan_webhook::ReceiverConfig {
            provider,
            secret: capstan_webhook::Secret::new(secret.trim_end_matches(['\n', '\r'])),
        },
    })
}

#[derive(Args)]
pub struct InstallFlags {
    /// Apply the manifests to the cluster instead of printing them
    #[arg(long)]
    apply: bool,
    #[arg(long, default_value = "capstan-system")]
    namespace: String,
    /// The controller image
    #[arg(long)]
    image: Option<String>,
    #[arg(long, default_value_t = 2)]
    replicas: u32,
}

pub async fn install(cluster: &ClusterFlags, flags: &InstallFlags) -> ExitCode {
    let mut options = capstan_controller::install::InstallOptions {
        namespace: flags.namespace.clone(),
        replicas: flags.replicas,
        ..Default::default()
    };
    if let Some(image) = &flags.image {
        options.image = image.clone();
    }
    if !flags.apply {
        print!("{}", capstan_controller::install::render_yaml(&options));
        return ExitCode::SUCCESS;
    }
    let result = async {
        let connected = capstan_cluster::Cluster::connect(&cluster.connect_options()).await?;
        for object in capstan_controller::install::manifests(&options) {
            let object: kube::api::DynamicObject = serde_json::from_value(object)?;
            let applied = connected
                .apply(&object, capstan_cluster::Ownership::Force, false)
                .await?;
            let reference = capstan_core::ObjectRef::from_object(&applied)?;
            println!("applied {reference}");
        }
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

#[derive(Subcommand)]
pub enum AppCommand {
    /// Applications with their sync, health and revision
    List(ListFlags),
    /// One Application: conditions, sync, health, drift, last plan
    Get(NamedFlags),
    /// Ask the controller to sync now (and wait until it has)
    Sync(NamedFlags),
    /// Stop reconciling (spec.suspend=true)
    Suspend(NamedFlags),
    /// Reconcile again
    Resume(NamedFlags),
    /// The last 10 syncs
    History(NamedFlags),
    /// Pin the app to a revision from its history until `capstan app unpin`
    Rollback {
        #[command(flatten)]
        named: NamedFlags,
        /// A commit (at least 7 hex digits) or revision string from `capstan app history`
        #[arg(long, value_name = "REVISION")]
        to: String,
    },
    /// Follow the GitRepository again after a rollback
    Unpin(NamedFlags),
}

#[derive(Args)]
pub struct ListFlags {
    /// Namespace (default: all)
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Args)]
pub struct NamedFlags {
    name: String,
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

async fn kube_api(cluster: &ClusterFlags) -> anyhow::Result<KubeApi> {
    let connected = capstan_cluster::Cluster::connect(&cluster.connect_options()).await?;
    Ok(KubeApi::new(connected.client(), None))
}

pub async fn app(cluster: &ClusterFlags, command: &AppCommand) -> ExitCode {
    match app_inner(cluster, command).await {
        Ok(code) => code,
        Err(err) => fail(&err),
    }
}

async fn app_inner(cluster: &ClusterFlags, command: &AppCommand) -> anyhow::Result<ExitCode> {
    let api = kube_api(cluster).await?;
    let mut out = anstream::stdout().lock();
    match command {
        AppCommand::List(flags) => {
            let apps = ops::list_apps(&api, flags.namespace.as_deref()).await?;
            match flags.output {
                Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&apps)?)?,
                Output::Text => print_app_table(&mut out, &apps)?,
            }
        }
        AppCommand::Get(named) => {
            let app = ops::get_app(&api, &named.namespace, &named.name).await?;
            match named.output {
                Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&app)?)?,
                Output::Text => print_app(&mut out, &app)?,
            }
        }
        AppCommand::Sync(named) => {
            let stamp = ops::request_sync(&api, &named.namespace, &named.name).await?;
            writeln!(out, "sync requested for {}/{}", named.namespace, named.name)?;
            // Wait (bounded) until the controller has handled this request.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            loop {
                let app = ops::get_app(&api, &named.namespace, &named.name).await?;
                let status = app.status.clone().unwrap_or_default();
                if status.last_handled_request.as_deref() == Some(stamp.as_str()) {
                    print_app(&mut out, &app)?;
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    anyhow::bail!(
                        "the controller did not handle the request within 120s; is it running?"
                    );
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        AppCommand::Suspend(named) | AppCommand::Resume(named) => {
            let suspend = matches!(command, AppCommand::Suspend(_));
            ops::set_suspend(&api, &named.namespace, &named.name, suspend).await?;
            let verb = if suspend { "suspended" } else { "resumed" };
            writeln!(out, "{verb} {}/{}", named.namespace, named.name)?;
        }
        AppCommand::History(named) => {
            let app = ops::get_app(&api, &named.namespace, &named.name).await?;
            let history = app.status.map(|s| s.history).unwrap_or_default();
            match named.output {
                Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&history)?)?,
                Output::Text => {
                    writeln!(
                        out,
                        "{:<22} {:<10} {:<9} {:<58} MESSAGE",
                        "TIME", "RESULT", "TRIGGER", "REVISION"
                    )?;
                    for entry in history {
                        writeln!(
                            out,
                            "{:<22} {:<10} {:<9} {:<58} {}",
                            entry.time, entry.result, entry.trigger, entry.revision, entry.message
                        )?;
                    }
                }
            }
        }
        AppCommand::Rollback { named, to } => {
            let commit = ops::rollback(&api, &named.namespace, &named.name, to).await?;
            writeln!(
                out,
                "{}/{} pinned to {commit}; `capstan app unpin {} -n {}` follows Git again",
                named.namespace, named.name, named.name, named.namespace
            )?;
        }
        AppCommand::Unpin(named) => {
            ops::unpin(&api, &named.namespace, &named.name).await?;
            writeln!(
                out,
                "{}/{} follows its GitRepository again",
                named.namespace, named.name
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ready_condition(conditions: &[capstan_controller::api::Condition]) -> (String, String) {
    conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.message.clone()))
        .unwrap_or_else(|| ("Unknown".into(), String::new()))
}

fn print_app_table(out: &mut impl Write, apps: &[Application]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<16} {:<24} {:<10} {:<12} {:<6} {:<20} MESSAGE",
        "NAMESPACE", "NAME", "SYNC", "HEALTH", "READY", "REVISION"
    )?;
    for app in apps {
        let status = app.status.clone().unwrap_or_default();
        let (ready, message) = ready_condition(&status.conditions);
        let revision = status
            .sync
            .as_ref()
            .map(|s| short_revision(&s.revision))
            .unwrap_or_default();
        writeln!(
            out,
            "{:<16} {:<24} {:<10} {:<12} {:<6} {:<20} {}",
            app.metadata.namespace.as_deref().unwrap_or_default(),
            app.metadata.name.as_deref().unwrap_or_default(),
            status.sync.map(|s| s.status).unwrap_or_default(),
            status.health.map(|h| h.status).unwrap_or_default(),
            if app.spec.suspend { "Susp." } else { &ready },
            revision,
            message
        )?;
    }
    Ok(())
}

/// `main@sha1:0123456789…` → `main@0123456789ab`.
fn short_revision(revision: &str) -> String {
    match revision.split_once("@sha1:") {
        Some((name, sha)) => format!("{name}@{}", &sha[..sha.len().min(12)]),
        None => revision.to_string(),
    }
}

fn print_app(out: &mut impl Write, app: &Application) -> std::io::Result<()> {
    let status = app.status.clone().unwrap_or_default();
    writeln!(
        out,
        "Application {}/{}",
        app.metadata.namespace.as_deref().unwrap_or_default(),
        app.metadata.name.as_deref().unwrap_or_default()
    )?;
    writeln!(
        out,
        "  source:      GitRepository {} path {}",
        app.spec.source_ref.name, app.spec.path
    )?;
    writeln!(out, "  destination: {}", app.spec.destination.namespace)?;
    if let Some(sync) = &status.sync {
        writeln!(out, "  sync:        {} at {}", sync.status, sync.revision)?;
    }
    if let Some(pinned) = &status.pinned_revision {
        writeln!(out, "  pinned:      {pinned}")?;
    }
    if let Some(health) = &status.health {
        writeln!(out, "  health:      {} {}", health.status, health.message)?;
    }
    if let Some(plan) = &status.last_plan {
        writeln!(
            out,
            "  last plan:   {} to create, {} to update, {} to replace, {} unchanged, {} to prune",
            plan.create, plan.update, plan.replace, plan.unchanged, plan.prune
        )?;
    }
    if let Some(inventory) = &status.inventory {
        let kinds: Vec<String> = inventory
            .kinds
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        writeln!(
            out,
            "  inventory:   {} objects ({})",
            inventory.objects,
            kinds.join(", ")
        )?;
    }
    for condition in &status.conditions {
        writeln!(
            out,
            "  {:<12} {} {}: {}",
            format!("{}:", condition.type_),
            condition.status,
            condition.reason,
            condition.message
        )?;
    }
    for drift in &status.drift {
        writeln!(
            out,
            "  drift:       {} {} changed by {}",
            drift.object,
            drift.fields.join(", "),
            drift.managers.join(", ")
        )?;
    }
    Ok(())
}

pub async fn sources(
    cluster: &ClusterFlags,
    name: Option<&str>,
    namespace: Option<&str>,
    output: Output,
) -> ExitCode {
    let result = async {
        let api = kube_api(cluster).await?;
        let repos: Vec<GitRepository> = match name {
            Some(name) => vec![ops::get_source(&api, namespace.unwrap_or("default"), name).await?],
            None => ops::list_sources(&api, namespace).await?,
        };
        let mut out = anstream::stdout().lock();
        match output {
            Output::Json if name.is_some() => {
                writeln!(out, "{}", serde_json::to_string_pretty(&repos[0])?)?
            }
            Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&repos)?)?,
            Output::Text => {
                writeln!(
                    out,
                    "{:<16} {:<20} {:<6} {:<20} {:<44} MESSAGE",
                    "NAMESPACE", "NAME", "READY", "REVISION", "URL"
                )?;
                for repo in &repos {
                    let status = repo.status.clone().unwrap_or_default();
                    let (ready, message) = ready_condition(&status.conditions);
                    writeln!(
                        out,
                        "{:<16} {:<20} {:<6} {:<20} {:<44} {}",
                        repo.metadata.namespace.as_deref().unwrap_or_default(),
                        repo.metadata.name.as_deref().unwrap_or_default(),
                        if repo.spec.suspend { "Susp." } else { &ready },
                        status
                            .artifact
                            .map(|a| short_revision(&a.revision))
                            .unwrap_or_default(),
                        repo.spec.url,
                        message
                    )?;
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}
