//! The `capstan` command line. Glue only: parse flags, call the crates, print the result.

mod app_file;
mod cmd_app;
mod cmd_controller;
mod cmd_source;
mod cmd_sync;
mod cmd_version;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "capstan",
    version,
    about = "GitOps continuous delivery for Kubernetes"
)]
struct Cli {
    #[command(flatten)]
    cluster: ClusterFlags,
    #[command(subcommand)]
    command: Command,
}

/// Cluster selection, with kubectl's names and precedence.
#[derive(Args)]
struct ClusterFlags {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then in-cluster)
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context)
    #[arg(long, global = true, value_name = "NAME")]
    context: Option<String>,
    /// Requests per second to the API server at most (default: no client-side limit, as kubectl)
    #[arg(long, global = true, value_name = "QPS", value_parser = parse_qps)]
    kube_api_qps: Option<f64>,
    /// Requests that may go at once after a quiet spell (default: one second's worth of --kube-api-qps)
    #[arg(long, global = true, value_name = "N", requires = "kube_api_qps")]
    kube_api_burst: Option<u32>,
    /// How long to wait for a connection (TCP and TLS) to the API server, e.g. 10s (default: 10s;
    /// `version`: 5s)
    #[arg(long, global = true, value_name = "DURATION", value_parser = capstan_api::duration::parse)]
    connect_timeout: Option<std::time::Duration>,
}

/// The connect timeout when `--connect-timeout` is not given.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A `--kube-api-qps` value that is not a positive, finite number; holds the text as given.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a positive number of requests per second")]
struct InvalidQps(String);

fn parse_qps(text: &str) -> Result<f64, InvalidQps> {
    match text.parse::<f64>() {
        Ok(qps) if qps.is_finite() && qps > 0.0 => Ok(qps),
        _ => Err(InvalidQps(text.to_owned())),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Print Capstan's version and commit, and the API server's version when a cluster is reachable
    Version {
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Only print Capstan's own version; do not contact a cluster
        #[arg(long)]
        client: bool,
    },
    /// Git sources
    Source {
        #[command(subcommand)]
        command: cmd_source::SourceCommand,
    },
    /// Render a directory into the objects Capstan would apply (plain YAML, Kustomize, Helm, Jsonnet)
    Render {
        /// The app directory; the repository root is its nearest ancestor holding .git (as written,
        /// symlinks not followed), and the directory must resolve inside it
        path: PathBuf,
        /// Renderer, instead of detecting it: plain, kustomize, helm, jsonnet (never detected)
        #[arg(long, value_name = "RENDERER")]
        renderer: Option<String>,
        #[command(flatten)]
        jsonnet: cmd_sync::JsonnetFlags,
        #[arg(short = 'o', long, value_enum, default_value_t = RenderOutput::Yaml)]
        output: RenderOutput,
    },
    /// Show what a sync would change; exit 0 if nothing, 1 if something would change, 2 on error
    Diff {
        #[command(flatten)]
        target: cmd_sync::SyncTarget,
        /// Include deletions of objects that left Git
        #[arg(long)]
        prune: bool,
    },
    /// Plan a sync: per object create / update / replace / unchanged with diffs, prunes, and a hash
    Plan {
        #[command(flatten)]
        target: cmd_sync::SyncTarget,
        /// Include deletions of objects that left Git
        #[arg(long)]
        prune: bool,
        /// Plan a sync with no objects (it prunes everything the app owns), as `sync --allow-empty`;
        /// without it, an empty render that would prune is refused, as by sync
        #[arg(long)]
        allow_empty: bool,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Also write the plan as JSON, for `capstan sync --plan FILE`
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Apply the app: plan, server-side apply in order, prune, and optionally wait for health
    Sync {
        #[command(flatten)]
        target: cmd_sync::SyncTarget,
        #[command(flatten)]
        flags: cmd_sync::SyncFlags,
    },
    /// Show the objects an app owns (from its inventory) and their health
    Status {
        #[command(flatten)]
        app: cmd_app::AppSelector,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Delete everything an app owns, then its inventory
    Delete {
        #[command(flatten)]
        app: cmd_app::AppSelector,
    },
    /// Run the controller: reconcile GitRepositories and Applications until stopped
    Controller(cmd_controller::ControllerFlags),
    /// Print (or --apply) the CRDs, RBAC and Deployment that run the controller in a cluster
    Install(cmd_controller::InstallFlags),
    /// Applications managed by the controller
    App {
        #[command(subcommand)]
        command: cmd_controller::AppCommand,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum RenderOutput {
    Yaml,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

impl ClusterFlags {
    fn connect_options(&self) -> capstan_cluster::ConnectOptions {
        capstan_cluster::ConnectOptions {
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            connect_timeout: Some(self.connect_timeout.unwrap_or(CONNECT_TIMEOUT)),
            rate_limit: self.kube_api_qps.map(|qps| capstan_cluster::RateLimit {
                qps,
                // Saturating float-to-int cast: a QPS beyond u32 is no limit anyway.
                burst: self.kube_api_burst.unwrap_or(qps.ceil() as u32),
            }),
            ..Default::default()
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The controller logs structured JSON lines at info; commands log warnings as text.
    let controller = matches!(cli.command, Command::Controller(_));
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if controller { "info" } else { "warn" })
    });
    {
        use tracing_subscriber::prelude::*;
        let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
        // The stage-duration metric is derived from the stage spans, whatever the log filter.
        let registry = tracing_subscriber::registry();
        if controller {
            registry
                .with(logs.json().flatten_event(true).with_filter(filter))
                .with(capstan_controller::metrics::StageLayer)
                .init();
        } else {
            registry.with(logs.with_filter(filter)).init();
        }
    }
    match cli.command {
        Command::Version { output, client } => cmd_version::run(&cli.cluster, output, client).await,
        Command::Source { command } => cmd_source::run(&cli.cluster, command).await,
        Command::Render {
            path,
            renderer,
            jsonnet,
            output,
        } => cmd_sync::render(&path, renderer.as_deref(), &jsonnet, output),
        Command::Diff { target, prune } => cmd_sync::diff(&cli.cluster, &target, prune).await,
        Command::Plan {
            target,
            prune,
            allow_empty,
            output,
            out,
        } => {
            cmd_sync::plan(
                &cli.cluster,
                &target,
                prune,
                allow_empty,
                output,
                out.as_deref(),
            )
            .await
        }
        Command::Sync { target, flags } => cmd_sync::sync(&cli.cluster, &target, &flags).await,
        Command::Status { app, output } => cmd_app::status(&cli.cluster, &app, output).await,
        Command::Delete { app } => cmd_app::delete(&cli.cluster, &app).await,
        Command::Controller(flags) => cmd_controller::run_controller(&cli.cluster, &flags).await,
        Command::Install(flags) => cmd_controller::install(&cli.cluster, &flags).await,
        Command::App { command } => cmd_controller::app(&cli.cluster, &command).await,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn qps_must_be_a_positive_finite_number() {
        assert_eq!(super::parse_qps("2.5").expect("valid"), 2.5);
        for text in ["0", "-1", "inf", "NaN", "fast"] {
            let err = super::parse_qps(text).expect_err(text);
            assert_eq!(
                err.to_string(),
                format!("{text:?} is not a positive number of requests per second")
            );
        }
    }
}
