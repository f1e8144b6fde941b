//! `capstan version`: Capstan's own version and commit, and the API server's when reachable.

use std::process::ExitCode;
use std::time::Duration;

use capstan_cluster::{Cluster, ConnectOptions};
use serde::Serialize;

use crate::{ClusterFlags, Output};

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

pub async fn run(flags: &ClusterFlags, output: Output, client_only: bool) -> ExitCode {
    let mut report = VersionReport {
        capstan: ClientVersion {
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("CAPSTAN_GIT_COMMIT"),
        },
        server: None,
        server_error: None,
    };
    if !client_only {
        let connect_timeout = flags.connect_timeout.unwrap_or(Duration::from_secs(5));
        let options = ConnectOptions {
            kubeconfig: flags.kubeconfig.clone(),
            context: flags.context.clone(),
            connect_timeout: Some(connect_timeout),
            ..Default::default()
        };
        let answer_within = connect_timeout + Duration::from_secs(10);
        let result = async {
            let cluster = Cluster::connect(&options).await?;
            let info = cluster.server_version().await?;
            Ok::<_, capstan_cluster::ClusterError>(ServerVersion {
                url: cluster.server_url().to_string(),
                git_version: info.git_version,
                platform: info.platform,
            })
        };
        match tokio::time::timeout(answer_within, result).await {
            Ok(Ok(server)) => report.server = Some(server),
            Ok(Err(err)) => report.server_error = Some(error_chain(&err)),
            Err(_) => {
                report.server_error = Some(format!(
                    "no answer from the API server within {answer_within:?}"
                ))
            }
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
pub fn error_chain(err: &dyn std::error::Error) -> String {
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
