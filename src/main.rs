//! The `capstan` command line. Glue only: parse flags, call the crates, print the result.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use capstan_cluster::{Cluster, ConnectOptions};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

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
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Serialize)]
struct VersionReport {
    capstan: ClientVersion,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<ServerVersion>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_error: Option<String>,
}

#[derive(Serialize)]
struct ClientVersion {
    version: &'static str,
    commit: &'static str,
}

#[derive(Serialize)]
struct ServerVersion {
    url: String,
    git_version: String,
    platform: String,
}

async fn version(flags: &ClusterFlags, output: Output, client_only: bool) -> ExitCode {
    let mut report = VersionReport {
        capstan: ClientVersion {
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("CAPSTAN_GIT_COMMIT"),
        },
        server: None,
        server_error: None,
    };
    if !client_only {
        let options = ConnectOptions {
            kubeconfig: flags.kubeconfig.clone(),
            context: flags.context.clone(),
            connect_timeout: Some(Duration::from_secs(5)),
        };
        let result = async {
            let cluster = Cluster::connect(&options).await?;
            let info = cluster.server_version().await?;
            Ok::<_, capstan_cluster::ClusterError>(ServerVersion {
                url: cluster.server_url().to_string(),
                git_version: info.git_version,
                platform: info.platform,
            })
        };
        match tokio::time::timeout(Duration::from_secs(15), result).await {
            Ok(Ok(server)) => report.server = Some(server),
            Ok(Err(err)) => report.server_error = Some(error_chain(&err)),
            Err(_) => report.server_error = Some("no answer from the API server within 15s".into()),
        }
    }
    match output {
        Output::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::FAILURE;
            }
        },
        Output::Text => {
            println!(
                "capstan {} (commit {})",
                report.capstan.version, report.capstan.commit
            );
            if let Some(server) = &report.server {
                println!(
                    "server {} {} at {}",
                    server.git_version, server.platform, server.url
                );
            }
            if let Some(err) = &report.server_error {
                eprintln!("server: not reachable: {err}");
            }
        }
    }
    ExitCode::SUCCESS
}

/// An error and its causes on one line, as kube's errors wrap the interesting part.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Version { output, client } => version(&cli.cluster, output, client).await,
    }
}
