//! `capstan diff | plan | sync`: render the app's source, plan against the cluster, and apply.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use capstan_api::spec::Renderer;
use capstan_engine::plan::{DesiredObject, Plan, hooks};
use capstan_engine::render::{
    JsonnetOptions, JsonnetValue, Limits, OutputFormat, RenderEngine, RenderOptions, Tools,
};
use capstan_engine::{Checkout, EngineError, SyncRequest};
use capstan_source::{CacheOptions, SourceCache};
use clap::Args;
use tracing::Instrument;

use crate::app_file::{AppSource, LoadedApp};
use crate::cmd_app::{AppSelector, engine, fail};
use crate::{ClusterFlags, Output, RenderOutput, output};

/// What to sync: an app file, or a directory with an app name and namespace.
#[derive(Args)]
pub struct SyncTarget {
    #[command(flatten)]
    pub app: AppSelector,
    /// A directory of manifests (plain YAML, kustomization, Helm chart or Jsonnet), without an app file
    #[arg(value_name = "PATH", conflicts_with = "file")]
    pub path: Option<PathBuf>,
    /// Renderer, instead of detecting it: plain, kustomize, helm, jsonnet (never detected)
    #[arg(long, value_name = "RENDERER")]
    pub renderer: Option<String>,
    #[command(flatten)]
    pub jsonnet: JsonnetFlags,
    /// Have the server dry-run every object, also those the live object already proves unchanged
    #[arg(long)]
    pub dry_run_all: bool,
}

/// Jsonnet inputs, as the `jsonnet` command names them. Given on the command line, they replace the
/// app file's `spec.render.jsonnet` field by field (ext vars and TLAs are merged by name).
#[derive(Args, Default)]
pub struct JsonnetFlags {
    /// Jsonnet: external variable as a string, `std.extVar(NAME)` (repeatable)
    #[arg(long = "ext-str", value_name = "NAME=VALUE")]
    pub ext_str: Vec<String>,
    /// Jsonnet: external variable as Jsonnet code (repeatable)
    #[arg(long = "ext-code", value_name = "NAME=CODE")]
    pub ext_code: Vec<String>,
    /// Jsonnet: top-level argument as a string (repeatable)
    #[arg(long = "tla-str", value_name = "NAME=VALUE")]
    pub tla_str: Vec<String>,
    /// Jsonnet: top-level argument as Jsonnet code (repeatable)
    #[arg(long = "tla-code", value_name = "NAME=CODE")]
    pub tla_code: Vec<String>,
    /// Jsonnet: library directory, relative to the repository root (repeatable; the last wins)
    #[arg(long = "jpath", short = 'J', value_name = "DIR")]
    pub jpath: Vec<String>,
    /// Jsonnet: the entry file, relative to the app directory (default: every *.jsonnet in it)
    #[arg(long = "jsonnet-main", value_name = "FILE")]
    pub main: Option<String>,
}

impl JsonnetFlags {
    /// Applies the flags over `options`.
    pub fn apply(&self, options: &mut JsonnetOptions) -> anyhow::Result<()> {
        let pairs = |flag: &str, items: &[String]| -> anyhow::Result<Vec<(String, String)>> {
            items
                .iter()
                .map(|item| match item.split_once('=') {
                    Some((name, value)) if !name.is_empty() => {
                        Ok((name.to_owned(), value.to_owned()))
                    }
                    // The value is never echoed: it may be a credential.
                    _ => bail!("--{flag} expects NAME=VALUE"),
                })
                .collect()
        };
        for (name, value) in pairs("ext-str", &self.ext_str)? {
            options.ext_vars.insert(name, JsonnetValue::String(value));
        }
        for (name, value) in pairs("ext-code", &self.ext_code)? {
            options.ext_vars.insert(name, JsonnetValue::Code(value));
        }
        for (name, value) in pairs("tla-str", &self.tla_str)? {
            options.tlas.insert(name, JsonnetValue::String(value));
        }
        for (name, value) in pairs("tla-code", &self.tla_code)? {
            options.tlas.insert(name, JsonnetValue::Code(value));
        }
        if !self.jpath.is_empty() {
            options.jpath.clone_from(&self.jpath);
        }
        if let Some(main) = &self.main {
            options.main = Some(main.clone());
        }
        Ok(())
    }
}

impl SyncTarget {
    fn load(&self) -> anyhow::Result<LoadedApp> {
        let mut loaded = self.app.load()?;
        if let Some(path) = &self.path {
            loaded.source = Some(AppSource::Directory {
                dir: path.clone(),
                anchor: path.clone(),
            });
        }
        if let Some(renderer) = &self.renderer {
            loaded.render.renderer = Some(parse_renderer(renderer)?);
        }
        self.jsonnet.apply(&mut loaded.render.jsonnet)?;
        loaded.app.policy.dry_run_all |= self.dry_run_all;
        Ok(loaded)
    }
}

/// `--renderer NAME`, as the spec names renderers.
fn parse_renderer(text: &str) -> anyhow::Result<capstan_engine::render::RendererKind> {
    let renderer: Renderer = text.parse().context("--renderer")?;
    Ok(capstan_engine::spec::renderer(renderer))
}

/// Fetches (for Git sources) and renders the app's source into the objects to sync, through the
/// engine's front half. Fails before anything touches the cluster.
pub async fn desired_objects(loaded: &LoadedApp) -> anyhow::Result<Vec<DesiredObject>> {
    let Some(source) = &loaded.source else {
        bail!(
            "app {} has no source: give a PATH or spec.source in the app file",
            loaded.app.id
        );
    };
    let checkout = match source {
        AppSource::Directory { dir, anchor } => {
            // The root comes from the path as written; the render confines the app directory to it
            // with the same check a Git checkout's `path` passes.
            let local = capstan_engine::render::local_app(dir, anchor)
                .with_context(|| format!("rendering {}", dir.display()))?;
            Checkout {
                root: local.root,
                path: local.path,
                shown: dir.display().to_string(),
            }
        }
        AppSource::Git { spec, path } => {
            let cache = SourceCache::new(CacheOptions::new(crate::cmd_source::default_cache_dir()));
            let artifact = cache
                .fetch(spec)
                .instrument(capstan_engine::Stage::Source.span())
                .await?;
            eprintln!("fetched {} {}", artifact.url, artifact.revision);
            Checkout {
                root: artifact.checkout.clone(),
                path: path.clone(),
                shown: format!("{} in {}", path.display(), artifact.revision),
            }
        }
    };
    let renderer = Arc::new(RenderEngine::new(Tools::from_env(), Limits::default()));
    Ok(capstan_engine::desired::render(renderer, checkout, loaded.render.clone()).await?)
}

/// `capstan render PATH`: the objects as a YAML stream or a JSON List.
pub fn render(
    path: &Path,
    renderer: Option<&str>,
    jsonnet: &JsonnetFlags,
    format: RenderOutput,
) -> ExitCode {
    let result = (|| {
        let renderer = renderer.map(parse_renderer).transpose()?;
        let mut options = RenderOptions {
            renderer,
            ..RenderOptions::default()
        };
        jsonnet.apply(&mut options.jsonnet)?;
        let format = match format {
            RenderOutput::Yaml => OutputFormat::Yaml,
            RenderOutput::Json => OutputFormat::Json,
        };
        let text = capstan_engine::render::render_command(path, &options, format)?;
        print!("{text}");
        anyhow::Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

async fn make_plan(flags: &ClusterFlags, loaded: &LoadedApp) -> anyhow::Result<Plan> {
    let desired = desired_objects(loaded).await?;
    let engine = engine(flags).await?;
    Ok(engine.plan(&loaded.app, desired).await?)
}

/// The plan `sync` would make and apply: what sync refuses (an empty render without
/// `--allow-empty`), this refuses too.
async fn make_sync_plan(flags: &ClusterFlags, loaded: &LoadedApp) -> anyhow::Result<Plan> {
    let desired = desired_objects(loaded).await?;
    let engine = engine(flags).await?;
    Ok(engine.plan_sync(&loaded.app, desired).await?)
}

/// `capstan diff`: exit 0 when nothing would change, 1 when something would, 2 on error.
pub async fn diff(flags: &ClusterFlags, target: &SyncTarget, prune: bool) -> ExitCode {
    let result = async {
        let loaded = target.load()?;
        let plan = make_plan(flags, &loaded).await?;
        let prune = prune || loaded.app.policy.prune;
        output::plan(&mut anstream::stdout(), &plan, prune)?;
        anyhow::Ok(plan.has_changes(prune))
    };
    match result.await {
        Ok(false) => ExitCode::SUCCESS,
        Ok(true) => ExitCode::from(1),
        Err(err) => fail(&err),
    }
}

/// `capstan plan`: the plan as text or JSON, optionally saved for `capstan sync --plan`.
pub async fn plan(
    flags: &ClusterFlags,
    target: &SyncTarget,
    prune: bool,
    allow_empty: bool,
    format: Output,
    out_file: Option<&Path>,
) -> ExitCode {
    let result = async {
        let mut loaded = target.load()?;
        loaded.app.policy.allow_empty |= allow_empty;
        let plan = make_sync_plan(flags, &loaded).await?;
        let prune = prune || loaded.app.policy.prune;
        if let Some(file) = out_file {
            std::fs::write(file, serde_json::to_string_pretty(&plan)?)
                .with_context(|| format!("writing plan file {}", file.display()))?;
        }
        let mut out = anstream::stdout();
        match format {
            Output::Json => writeln!(out, "{}", serde_json::to_string_pretty(&plan)?)?,
            Output::Text => {
                output::plan(&mut out, &plan, prune)?;
                writeln!(out, "Plan hash: {}", plan.hash)?;
            }
        }
        anyhow::Ok(())
    };
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

#[derive(Args)]
pub struct SyncFlags {
    /// Delete objects that left Git (only those this app created)
    #[arg(long)]
    pub prune: bool,
    /// Allow a sync with no objects (it prunes everything the app owns)
    #[arg(long)]
    pub allow_empty: bool,
    /// Wait until everything is healthy; the exit code says whether it became healthy
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, e.g. 90s, 5m
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = capstan_api::duration::parse)]
    pub timeout: Duration,
    /// Apply only if the fresh plan equals this plan file (from `capstan plan --out FILE`)
    #[arg(long, value_name = "FILE")]
    pub plan: Option<PathBuf>,
}

fn expected_plan_hash(file: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading plan file {}", file.display()))?;
    let plan: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("plan file {} is not JSON", file.display()))?;
    plan.get("hash")
        .and_then(|h| h.as_str())
        .map(str::to_string)
        .with_context(|| format!("plan file {} has no \"hash\"", file.display()))
}

/// `capstan sync`: plan, apply, prune and optionally wait for health.
pub async fn sync(flags: &ClusterFlags, target: &SyncTarget, sync_flags: &SyncFlags) -> ExitCode {
    let result = async {
        let mut loaded = target.load()?;
        loaded.app.policy.allow_empty |= sync_flags.allow_empty;
        let desired = desired_objects(&loaded).await?;
        let request = SyncRequest {
            prune: sync_flags.prune,
            expected_plan: sync_flags
                .plan
                .as_deref()
                .map(expected_plan_hash)
                .transpose()?,
        };
        let engine = engine(flags).await?;
        let mut out = anstream::stdout();
        let report = match engine.sync(&loaded.app, desired, &request).await {
            Ok(report) => report,
            Err(EngineError::Apply { source, .. }) => {
                output::changes(&mut out, &source.changed)?;
                bail!("app {}: {source}", loaded.app.id);
            }
            Err(err) => return Err(err.into()),
        };
        output::changes(&mut out, &report.changes)?;
        if !sync_flags.wait {
            return anyhow::Ok(true);
        }
        let watched: Vec<_> = report
            .plan
            .changes
            .iter()
            .filter(|c| !hooks::is_hook(&c.desired))
            .map(|c| c.object.clone())
            .collect();
        let mut last = String::new();
        let mut err_out = anstream::stderr();
        let waited = engine
            .wait_healthy(
                &watched,
                &loaded.health_rules,
                sync_flags.timeout,
                |summary| {
                    let text = summary.to_string();
                    if text != last {
                        let _ = output::progress(&mut err_out, summary);
                        last = text;
                    }
                },
            )
            .await;
        match waited {
            Ok(summary) => {
                writeln!(out, "Healthy: {}", summary)?;
                Ok(true)
            }
            Err(err) => {
                writeln!(anstream::stderr(), "error: {err}")?;
                Ok(false)
            }
        }
    };
    match result.await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => fail(&err),
    }
}
