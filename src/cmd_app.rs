//! App commands: which app (an app file or flags), and the status / delete verbs on it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use capstan_cluster::Cluster;
use capstan_core::ownership::AppId;
use capstan_engine::health::HealthRules;
use capstan_engine::{App, Engine, Policy};
use clap::Args;
use serde::Serialize;

use crate::app_file::{self, LoadedApp};
use crate::cmd_version::error_chain;
use crate::{ClusterFlags, Output, output};

/// Which app: an app file, or a name and namespace.
#[derive(Args)]
pub struct AppSelector {
    /// The app file (capstan.yaml)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The app's name, when there is no app file
    #[arg(long, value_name = "NAME", conflicts_with = "file")]
    pub app: Option<String>,
    /// The app's namespace: where its inventory lives and the default for namespaced objects
    #[arg(short = 'n', long, value_name = "NAMESPACE", conflicts_with = "file")]
    pub namespace: Option<String>,
}

impl AppSelector {
    pub fn load(&self) -> anyhow::Result<LoadedApp> {
        if let Some(file) = &self.file {
            return app_file::load(file);
        }
        let (Some(name), Some(namespace)) = (&self.app, &self.namespace) else {
            bail!("name the app: -f capstan.yaml, or --app NAME -n NAMESPACE");
        };
        Ok(LoadedApp {
            app: App {
                id: AppId::new(namespace.clone(), name.clone()),
                destination_namespace: namespace.clone(),
                policy: Policy::default(),
            },
            source: None,
            render: Default::default(),
            health_rules: HealthRules::new(),
        })
    }
}

pub async fn engine(flags: &ClusterFlags) -> anyhow::Result<Engine> {
    let cluster = Cluster::connect(&flags.connect_options()).await?;
    Ok(Engine::new(cluster))
}

/// Prints an error with its causes and returns exit code 2 (kubectl diff's "error" code).
pub fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {}", error_chain(err.as_ref()));
    ExitCode::from(2)
}

#[derive(Serialize)]
struct StatusRow {
    object: capstan_core::ObjectRef,
    health: capstan_engine::health::Health,
}

pub async fn status(flags: &ClusterFlags, selector: &AppSelector, format: Output) -> ExitCode {
    match status_inner(flags, selector, format).await {
        Ok(code) => code,
        Err(err) => fail(&err),
    }
}

async fn status_inner(
    flags: &ClusterFlags,
    selector: &AppSelector,
    format: Output,
) -> anyhow::Result<ExitCode> {
    let loaded = selector.load()?;
    let engine = engine(flags).await?;
    let objects = engine.inventory(&loaded.app).await?;
    let verdicts = engine.health(&objects, &loaded.health_rules).await?;
    let summary = capstan_engine::health::summarize(&verdicts);
    let mut out = anstream::stdout();
    match format {
        Output::Json => {
            let rows: Vec<StatusRow> = verdicts
                .into_iter()
                .map(|(object, health)| StatusRow { object, health })
                .collect();
            let report = serde_json::json!({
                "app": loaded.app.id.to_string(),
                "health": summary.status,
                "objects": rows,
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
        }
        Output::Text => {
            writeln!(out, "App {}: {} objects", loaded.app.id, objects.len())?;
            let names: Vec<String> = verdicts.iter().map(|(o, _)| o.to_string()).collect();
            let width = names.iter().map(String::len).max().unwrap_or(0);
            for (name, (_, health)) in names.iter().zip(&verdicts) {
                writeln!(out, "  {name:<width$}  {}", output::paint_health(health))?;
            }
            output::progress(&mut out, &summary)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(flags: &ClusterFlags, selector: &AppSelector) -> ExitCode {
    let result = async {
        let loaded = selector.load()?;
        let engine = engine(flags).await?;
        let changes = engine
            .delete(&loaded.app)
            .await
            .with_context(|| format!("deleting app {}", loaded.app.id))?;
        output::changes(&mut anstream::stdout(), &changes)?;
        anyhow::Ok(())
    };
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}
