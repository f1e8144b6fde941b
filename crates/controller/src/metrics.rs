//! The controller's Prometheus metrics (prometheus-client), served on `/metrics`.

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// fetch, render, plan/sync, health, total.
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `ControllerError::metric_label`.
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppStatusLabels {
    pub sync: String,
    pub health: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

/// Every metric the controller exports. Cheap to clone (all handles are shared).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub reconcile_duration: Family<StageLabels, Histogram>,
    pub reconciles: Family<ResultLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub apps: Family<AppStatusLabels, Gauge>,
    pub objects_applied: Counter,
    pub objects_pruned: Counter,
    pub git_fetch_duration: Histogram,
    pub git_fetch_errors: Counter,
    pub queue_depth: Family<ControllerLabels, Gauge>,
    pub api_requests: Family<VerbLabels, Counter>,
    pub drift_events: Counter,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("capstan");
        let reconcile_duration = STAGE_DURATIONS.clone();
        registry.register(
            "reconcile_duration_seconds",
            "Time spent per stage (source, render, plan, apply, prune, health) and per \
             reconciliation (total), from the stages' tracing spans",
            reconcile_duration.clone(),
        );
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Application reconciliations by result",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Failed reconciliations by kind of error",
            reconcile_errors.clone(),
        );
        let apps = Family::<AppStatusLabels, Gauge>::default();
        registry.register(
            "applications",
            "Applications by sync and health status",
            apps.clone(),
        );
        let objects_applied = Counter::default();
        registry.register(
            "objects_applied",
            "Objects created, updated or replaced by syncs",
            objects_applied.clone(),
        );
        let objects_pruned = Counter::default();
        registry.register(
            "objects_pruned",
            "Objects deleted by prune",
            objects_pruned.clone(),
        );
        let git_fetch_duration = Histogram::new(exponential_buckets(0.005, 2.0, 16));
        registry.register(
            "git_fetch_duration_seconds",
            "Time per GitRepository fetch (ref listing, and the fetch when refs moved)",
            git_fetch_duration.clone(),
        );
        let git_fetch_errors = Counter::default();
        registry.register(
            "git_fetch_errors",
            "GitRepository fetches that failed",
            git_fetch_errors.clone(),
        );
        let queue_depth = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Reconciliations requested but not finished, per controller",
            queue_depth.clone(),
        );
        let api_requests = Family::<VerbLabels, Counter>::default();
        registry.register(
            "api_requests",
            "Requests sent to the Kubernetes API server, by verb",
            api_requests.clone(),
        );
        let drift_events = Counter::default();
        registry.register(
            "drift_events",
            "Changes to owned objects made by someone other than Capstan",
            drift_events.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reconcile_duration,
            reconciles,
            reconcile_errors,
            apps,
            objects_applied,
            objects_pruned,
            git_fetch_duration,
            git_fetch_errors,
            queue_depth,
            api_requests,
            drift_events,
            leader,
        }
    }

    pub fn observe_stage(&self, stage: &'static str, elapsed: Duration) {
        self.reconcile_duration
            .get_or_create(&StageLabels { stage })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a failed reconciliation by its kind.
    pub fn reconcile_error(&self, error: &crate::ControllerError) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: error.metric_label(),
            })
            .inc();
    }

    /// Counts one API request; handed to `capstan_cluster::ConnectOptions::observe_request`.
    pub fn request_observer(&self) -> capstan_cluster::RequestObserver {
        let requests = self.api_requests.clone();
        Arc::new(move |verb| {
            requests.get_or_create(&VerbLabels { verb }).inc();
        })
    }

    /// Tracks reconciliations in flight for one controller (the queue depth gauge).
    pub fn in_flight(&self, controller: &'static str) -> InFlight {
        let gauge = self
            .queue_depth
            .get_or_create(&ControllerLabels { controller })
            .clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// Replaces the per-status application counts.
    pub fn set_app_counts(&self, counts: impl IntoIterator<Item = ((String, String), i64)>) {
        self.apps.clear();
        for ((sync, health), count) in counts {
            self.apps
                .get_or_create(&AppStatusLabels { sync, health })
                .set(count);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Decrements the queue depth gauge when the reconciliation ends (also on panic or cancellation).
pub struct InFlight(Gauge<i64, AtomicI64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_family() {
        let metrics = Metrics::new();
        metrics.observe_stage("fetch", Duration::from_millis(12));
        (metrics.request_observer())("patch");
        metrics.objects_applied.inc_by(3);
        {
            let _busy = metrics.in_flight("application");
            assert!(
                metrics
                    .encode()
                    .contains("capstan_queue_depth{controller=\"application\"} 1")
            );
        }
        let text = metrics.encode();
        assert!(text.contains("capstan_queue_depth{controller=\"application\"} 0"));
        assert!(text.contains("capstan_api_requests_total{verb=\"patch\"} 1"));
        assert!(text.contains("capstan_objects_applied_total 3"));
        assert!(text.contains("capstan_reconcile_duration_seconds_count{stage=\"fetch\"} 1"));
    }
}

/// Stage durations, fed by [`StageLayer`] from the stages' spans; shared by every [`Metrics`].
static STAGE_DURATIONS: LazyLock<Family<StageLabels, Histogram>> = LazyLock::new(|| {
    Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 16)))
});

/// A tracing layer that times the stage spans (`capstan_engine::stage`, target
/// [`capstan_engine::stage::TARGET`]) and the controller's `total` span, and records their
/// durations in `capstan_reconcile_duration_seconds{stage}`. The binary adds it to its subscriber
/// when it runs the controller.
#[derive(Clone, Copy, Debug, Default)]
pub struct StageLayer;

struct Started(Instant);

impl<S> tracing_subscriber::Layer<S> for StageLayer
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().target() != capstan_engine::stage::TARGET {
            return;
        }
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Started(Instant::now()));
        }
    }

    fn on_close(&self, id: tracing::span::Id, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let Some(span) = ctx.span(&id) else {
            return;
        };
        let Some(started) = span.extensions().get::<Started>().map(|s| s.0) else {
            return;
        };
        let stage = span.name();
        if stage == "total" || capstan_engine::Stage::from_span_name(stage).is_some() {
            STAGE_DURATIONS
                .get_or_create(&StageLabels { stage })
                .observe(started.elapsed().as_secs_f64());
        }
    }
}
