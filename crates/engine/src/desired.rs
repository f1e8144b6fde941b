//! The front half of every sync: a checkout and an app's render options → the objects to plan.
//! Both front ends (the CLI with a directory or a Git source it fetched, the controller with a
//! GitRepository's artifact) call [`render`]; fetching stays with them.

use std::path::PathBuf;
use std::sync::Arc;

use capstan_plan::DesiredObject;
use capstan_render::{RenderEngine, RenderOptions};
use tracing::Instrument;

use crate::{EngineError, stage};

/// Where the app's manifests are: a checkout (or local repository) root and the app's directory in
/// it, with how to name them in errors (`shop in main@sha1:…`).
#[derive(Clone, Debug)]
pub struct Checkout {
    pub root: PathBuf,
    pub path: PathBuf,
    pub shown: String,
}

/// Renders the app's directory off the async workers (Helm and kustomize are child processes,
/// Jsonnet evaluates on a thread) and turns the result into the plan's input, each object with its
/// provenance. Fails before anything touches a cluster.
pub async fn render(
    renderer: Arc<RenderEngine>,
    checkout: Checkout,
    options: RenderOptions,
) -> Result<Vec<DesiredObject>, EngineError> {
    let span = stage::Stage::Render.span();
    let Checkout { root, path, shown } = checkout;
    let rendered = tokio::task::spawn_blocking(move || renderer.render(&root, &path, &options))
        .instrument(span.clone())
        .await
        .map_err(|source| EngineError::RenderTask { source })?
        .map_err(|source| EngineError::Render { shown, source })?;
    let _entered = span.enter();
    crate::desired_objects(&rendered)
}
