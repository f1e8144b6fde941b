//! The controller's HTTP server: `/healthz` (the process serves), `/readyz` (controllers running;
//! a standby replica waiting for the lease is not ready), `/metrics` (Prometheus text format) and the
//! Git webhook receivers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State as Extract;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use capstan_webhook::{
    BoxFuture, Limits, PushEvent, Receiver, ReceiverConfig, ReceiverError, TriggerOutcome,
};

use crate::metrics::Metrics;
use crate::{Context, ControllerError};

/// One named webhook receiver: `POST /hook/<name>`, verified with `config`'s provider and secret.
#[derive(Clone, Debug)]
pub struct NamedReceiver {
    pub name: String,
    pub config: ReceiverConfig,
}

/// Webhooks trigger the GitRepositories whose URL is the pushed repository's.
struct Receivers {
    context: Arc<Context>,
    receivers: Arc<Vec<NamedReceiver>>,
}

impl Receiver for Receivers {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ReceiverConfig>, ReceiverError>> {
        Box::pin(async move {
            Ok(self
                .receivers
                .iter()
                .find(|r| r.name == name)
                .map(|r| r.config.clone()))
        })
    }

    fn trigger<'a>(
        &'a self,
        _name: &'a str,
        event: PushEvent,
    ) -> BoxFuture<'a, Result<TriggerOutcome, ReceiverError>> {
        Box::pin(async move {
            let matching = crate::sources::matching_repositories(
                &self.context.repositories(),
                &event.repository_urls,
                capstan_webhook::same_repository,
            );
            Ok(TriggerOutcome {
                triggered: self.context.trigger_sources(matching),
            })
        })
    }
}

#[derive(Clone)]
pub struct State {
    pub metrics: Metrics,
    pub ready: Arc<AtomicBool>,
    pub context: Arc<Context>,
    pub receivers: Arc<Vec<NamedReceiver>>,
}

pub fn router(state: State) -> Router {
    let hooks = capstan_webhook::router(
        Arc::new(Receivers {
            context: state.context.clone(),
            receivers: state.receivers.clone(),
        }),
        Limits::default(),
    );
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(hooks)
}

async fn readyz(Extract(state): Extract<State>) -> impl IntoResponse {
    if state.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(Extract(state): Extract<State>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// Binds `addr` and serves until `stop` turns true.
pub async fn serve(
    addr: SocketAddr,
    state: State,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ControllerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ControllerError::Serve { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(%bound, "serving /healthz, /readyz, /metrics and webhooks");
    let app = router(state);
    Ok(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "HTTP server failed");
        }
    }))
}
