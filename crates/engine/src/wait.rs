//! Waiting for health: polls the objects a sync wrote until all are Current, one is Failed, or the
//! deadline passes, reporting a [`Summary`] after every round so front ends can show progress.

use std::time::Duration;
use tracing::Instrument;

use capstan_core::ObjectRef;
use capstan_health::{Health, HealthRules, HealthStatus, Summary, summarize};
use futures::{StreamExt, stream};

use crate::{Engine, EngineError, Target};

const POLL: Duration = Duration::from_millis(500);
/// Objects read at once per round.
const CONCURRENCY: usize = 16;

impl<C: Target> Engine<C> {
    /// The health of each object now (in the order given); a missing object is NotFound. Objects
    /// are read concurrently, as `status` and `--wait` read every object of an app each round.
    pub async fn health(
        &self,
        objects: &[ObjectRef],
        rules: &HealthRules,
    ) -> Result<Vec<(ObjectRef, Health)>, EngineError> {
        // The futures are built eagerly: a closure over `&ObjectRef` inside the stream type would
        // make the future not `Send` for callers that spawn it (the controller's reconcilers).
        let reads: Vec<_> = objects
            .iter()
            .map(|object| async move { Ok((object.clone(), self.health_of(object, rules).await?)) })
            .collect();
        stream::iter(reads)
            .buffered(CONCURRENCY)
            .collect::<Vec<Result<_, EngineError>>>()
            .instrument(crate::Stage::Health.span())
            .await
            .into_iter()
            .collect()
    }

    async fn health_of(
        &self,
        object: &ObjectRef,
        rules: &HealthRules,
    ) -> Result<Health, EngineError> {
        capstan_health::observe(&self.cluster, object, rules)
            .await
            .map_err(EngineError::cluster)
    }

    /// Waits until every object is Current. Stops early when one is Failed; reports each round to
    /// `progress`.
    pub async fn wait_healthy(
        &self,
        objects: &[ObjectRef],
        rules: &HealthRules,
        timeout: Duration,
        mut progress: impl FnMut(&Summary),
    ) -> Result<Summary, EngineError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let summary = summarize(&self.health(objects, rules).await?);
            progress(&summary);
            if summary.is_healthy() {
                return Ok(summary);
            }
            if summary.status == HealthStatus::Failed {
                return Err(EngineError::Unhealthy {
                    summary: Box::new(summary),
                    timed_out: None,
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EngineError::Unhealthy {
                    summary: Box::new(summary),
                    timed_out: Some(timeout),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
