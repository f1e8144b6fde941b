//! The pipeline's stages as tracing spans: one span per stage, named after it, so logs nest and the
//! controller's stage-duration metric is derived from the spans' lifetimes instead of timers.
//! Front ends open a parent span carrying the app and the revision around their calls.

/// A stage of the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    Source,
    Render,
    Plan,
    Apply,
    Prune,
    Health,
}

/// The span target every stage span has (what a stage-duration layer looks for).
pub const TARGET: &str = "capstan::stage";

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Source,
        Stage::Render,
        Stage::Plan,
        Stage::Apply,
        Stage::Prune,
        Stage::Health,
    ];

    /// The span's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Render => "render",
            Stage::Plan => "plan",
            Stage::Apply => "apply",
            Stage::Prune => "prune",
            Stage::Health => "health",
        }
    }

    /// The stage a span of [`TARGET`] with this name stands for.
    pub fn from_span_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|stage| stage.as_str() == name)
    }

    /// A new span for this stage, child of the current span (which names the app and revision).
    pub fn span(self) -> tracing::Span {
        match self {
            Stage::Source => tracing::info_span!(target: "capstan::stage", "source"),
            Stage::Render => tracing::info_span!(target: "capstan::stage", "render"),
            Stage::Plan => tracing::info_span!(target: "capstan::stage", "plan"),
            Stage::Apply => tracing::info_span!(target: "capstan::stage", "apply"),
            Stage::Prune => tracing::info_span!(target: "capstan::stage", "prune"),
            Stage::Health => tracing::info_span!(target: "capstan::stage", "health"),
        }
    }
}

/// The span a front end opens around one reconciliation or command of an app.
pub fn app_span(app: &crate::ownership::AppId, revision: &str) -> tracing::Span {
    tracing::info_span!("app", app = %app, revision = %revision)
}
