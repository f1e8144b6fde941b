//! The engine: one sync of one app, from desired objects to a changed cluster, with the safety rules
//! that span stages.
//!
//! ```text
//! desired objects ─▶ load inventory ─▶ plan ─▶ checks ─▶ record union ─▶ apply ─▶ prune ─▶ record desired
//! ```
//!
//! - Nothing is applied when planning fails (a bad object stops the sync before any write).
//! - An empty set of desired objects never prunes an app that has objects, unless `allow_empty`.
//! - A plan hash given by the caller (`capstan sync --plan FILE`) must match the fresh plan.
//! - The inventory is written before apply as previous ∪ desired, so a crash never loses track of an
//!   object, and shrunk to what is still there only after prune succeeded.

pub mod desired;
#[cfg(test)]
mod fake;
pub mod spec;
mod wait;

use std::time::Duration;

use capstan_apply::{ApplyError, ApplyOptions, ApplyTarget, ChangeSet, Conflicts};
use capstan_cluster::Cluster;
use capstan_core::ObjectRef;
use capstan_core::api::{ClusterError, PropagationPolicy};
use capstan_core::ownership::AppId;
use capstan_health::{HealthView, Summary};
use capstan_inventory::{ConfigMaps, Inventory, InventoryError, InventoryStore};
use capstan_plan::{
    DesiredObject, IgnoreDifference, Plan, PlanError, PlanOptions, PruneDecision, ServerView,
};
use tracing::Instrument;

// The stages' types that front ends print or pass on, reached through the engine: the CLI and the
// controller depend on the engine for the pipeline, not on the stage crates.
pub use capstan_api as api;
pub use capstan_apply as apply;
pub use capstan_core::stage::{self, Stage};
pub use capstan_health as health;
pub use capstan_plan as plan;
pub use capstan_render as render;
pub use desired::Checkout;
pub use spec::SpecError;

/// An app as the engine sees it: identity, destination and policy. Where its objects come from (a
/// directory, a Git revision) is decided before the engine.
#[derive(Clone, Debug)]
pub struct App {
    pub id: AppId,
    /// Namespace for namespaced objects that do not name one.
    pub destination_namespace: String,
    pub policy: Policy,
}

#[derive(Clone, Debug)]
pub struct Policy {
    /// Prune on every sync, not only with `--prune`.
    pub prune: bool,
    /// Allow a sync with no objects to prune everything.
    pub allow_empty: bool,
    pub conflicts: Conflicts,
    pub replace: bool,
    pub propagation: PropagationPolicy,
    /// Fields of existing objects that plan and sync leave alone (`capstan_plan::ignore`).
    pub ignore_differences: Vec<IgnoreDifference>,
    /// Dry-run every object, also those the live object proves unchanged (`capstan_plan::unchanged`).
    pub dry_run_all: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            prune: false,
            allow_empty: false,
            conflicts: Conflicts::TakeOwnership,
            replace: false,
            propagation: PropagationPolicy::Background,
            ignore_differences: Vec::new(),
            dry_run_all: false,
        }
    }
}

/// One sync's choices on top of the app's policy.
#[derive(Clone, Debug, Default)]
pub struct SyncRequest {
    pub prune: bool,
    /// Only sync when the fresh plan has this hash (a plan file reviewed earlier).
    pub expected_plan: Option<String>,
}

#[derive(Debug)]
pub struct SyncReport {
    pub plan: Plan,
    pub changes: ChangeSet,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("app {app}: {source}")]
    Plan {
        app: String,
        #[source]
        source: PlanError,
    },
    #[error(
        "app {app}: nothing was rendered, and syncing that would prune all {count} objects it owns; \
         refusing (use --allow-empty if the app is really meant to be empty)"
    )]
    EmptyRender { app: String, count: usize },
    #[error(
        "app {app}: the plan changed since it was made (expected {expected}, now {actual}): the \
         input or the cluster changed; make a new plan"
    )]
    PlanChanged {
        app: String,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Cluster(Box<ClusterError>),
    #[error("{}{summary}", timed_out.map(|t| format!("not healthy after {t:?}: ")).unwrap_or_else(|| "unhealthy: ".into()))]
    Unhealthy {
        summary: Box<Summary>,
        /// `None` when an object Failed before the deadline.
        timed_out: Option<Duration>,
    },
    /// The render stage refused the app's directory.
    #[error("rendering {shown}: {source}")]
    Render {
        shown: String,
        #[source]
        source: capstan_render::RenderError,
    },
    /// The blocking render task panicked or was cancelled.
    #[error("render task failed: {source}")]
    RenderTask {
        #[source]
        source: tokio::task::JoinError,
    },
    /// The app's spec cannot be used (a field named).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A rendered document that is not a Kubernetes object (no apiVersion, kind or name).
    #[error("{provenance}: not a Kubernetes object: {message}")]
    NotAnObject { provenance: String, message: String },
    /// The apply stopped; `plan` and what was changed before the failure come with it.
    #[error("app {app}: {source}")]
    Apply {
        app: String,
        plan: Box<Plan>,
        #[source]
        source: ApplyError,
    },
}

impl EngineError {
    fn cluster(source: ClusterError) -> Self {
        EngineError::Cluster(Box::new(source))
    }

    /// The API server's answer behind this error, whichever stage met it; `None` when the error did
    /// not come from the cluster. Classification goes through this, by type and API status, never by
    /// the error's text.
    pub fn cluster_error(&self) -> Option<&ClusterError> {
        match self {
            EngineError::Cluster(source) => Some(source),
            EngineError::Plan { source, .. } => source.cluster_error(),
            EngineError::Apply { source, .. } => source.failure.cluster_error(),
            EngineError::Inventory(source) => source.cluster_error(),
            _ => None,
        }
    }

    /// RBAC (or admission) refused a request: retrying will not help until permissions change.
    pub fn is_forbidden(&self) -> bool {
        self.cluster_error().is_some_and(ClusterError::is_forbidden)
    }

    /// A concurrent writer got there first (inventory or object); a retry usually succeeds.
    pub fn is_conflict(&self) -> bool {
        matches!(self, EngineError::Inventory(source) if source.is_conflict())
            || self.cluster_error().is_some_and(ClusterError::is_conflict)
    }
}

/// The render stage's objects as the plan's input, each with its provenance as `file#document`.
pub fn desired_objects(
    rendered: &capstan_render::Rendered,
) -> Result<Vec<DesiredObject>, EngineError> {
    rendered
        .objects
        .iter()
        .map(|rendered| {
            let provenance = format!(
                "{}#{}",
                rendered.provenance.file.display(),
                rendered.provenance.document
            );
            match serde_json::from_value(rendered.object.clone()) {
                Ok(object) => Ok(DesiredObject { object, provenance }),
                Err(error) => Err(EngineError::NotAnObject {
                    provenance,
                    message: error.to_string(),
                }),
            }
        })
        .collect()
}

/// An empty render would prune everything the app owns: refused unless the app allows it.
fn refuse_empty(
    app: &App,
    desired: &[DesiredObject],
    inventory: &Inventory,
) -> Result<(), EngineError> {
    if desired.is_empty() && !inventory.is_empty() && !app.policy.allow_empty {
        return Err(EngineError::EmptyRender {
            app: app.id.to_string(),
            count: inventory.len(),
        });
    }
    Ok(())
}

/// Everything the engine's stages need from a cluster: each stage's trait, defined in that stage's
/// crate. `capstan_cluster::Cluster` implements them all (module `capstan_cluster::stages`); unit
/// tests use an in-memory fake. Implemented for every type that implements the four.
pub trait Target: ServerView + ApplyTarget + ConfigMaps + HealthView + Clone + Send + Sync {}

impl<T> Target for T where
    T: ServerView + ApplyTarget + ConfigMaps + HealthView + Clone + Send + Sync
{
}

/// The engine for one cluster (in production a `capstan_cluster::Cluster`).
pub struct Engine<C = Cluster> {
    cluster: C,
}

impl<C: Target> Engine<C> {
    pub fn new(cluster: C) -> Self {
        Self { cluster }
    }

    pub fn cluster(&self) -> &C {
        &self.cluster
    }

    fn store(&self, app: &App) -> InventoryStore<C> {
        InventoryStore::new(self.cluster.clone(), app.id.clone())
    }

    /// What a sync would do; changes nothing.
    pub async fn plan(&self, app: &App, desired: Vec<DesiredObject>) -> Result<Plan, EngineError> {
        let stored = self.store(app).load().await?;
        self.plan_against(app, desired, &stored.inventory).await
    }

    /// The plan of a sync, refusing first what [`Engine::sync`] would refuse before planning (an
    /// empty render that would prune everything the app owns, unless `allow_empty`); changes
    /// nothing. `capstan plan` shows this plan, for `capstan sync --plan`.
    pub async fn plan_sync(
        &self,
        app: &App,
        desired: Vec<DesiredObject>,
    ) -> Result<Plan, EngineError> {
        let stored = self.store(app).load().await?;
        refuse_empty(app, &desired, &stored.inventory)?;
        self.plan_against(app, desired, &stored.inventory).await
    }

    async fn plan_against(
        &self,
        app: &App,
        desired: Vec<DesiredObject>,
        previous: &Inventory,
    ) -> Result<Plan, EngineError> {
        capstan_plan::plan(
            &self.cluster,
            &app.id,
            &app.destination_namespace,
            desired,
            previous,
            &PlanOptions {
                replace: app.policy.replace,
                ignore_differences: app.policy.ignore_differences.clone(),
                dry_run_all: app.policy.dry_run_all,
            },
        )
        .instrument(Stage::Plan.span())
        .await
        .map_err(|source| EngineError::Plan {
            app: app.id.to_string(),
            source,
        })
    }

    /// Plans, then applies and (when asked or by policy) prunes.
    pub async fn sync(
        &self,
        app: &App,
        desired: Vec<DesiredObject>,
        request: &SyncRequest,
    ) -> Result<SyncReport, EngineError> {
        let started = std::time::Instant::now();
        let store = self.store(app);
        let stored = store.load().await?;
        let prune = request.prune || app.policy.prune;
        refuse_empty(app, &desired, &stored.inventory)?;
        let plan = self.plan_against(app, desired, &stored.inventory).await?;
        tracing::debug!(
            app = %app.id,
            objects = plan.changes.len(),
            unchanged = plan.count(capstan_plan::Action::Unchanged),
            elapsed_ms = started.elapsed().as_millis(),
            "planned"
        );
        if let Some(expected) = &request.expected_plan
            && *expected != plan.hash
        {
            return Err(EngineError::PlanChanged {
                app: app.id.to_string(),
                expected: expected.clone(),
                actual: plan.hash.clone(),
            });
        }

        let desired_inventory = plan.desired_inventory();
        if stored.resource_version.is_none() {
            // The first sync of an app: its inventory needs a home before anything is applied.
            store
                .ensure_namespace()
                .await
                .map_err(EngineError::cluster)?;
        }
        // Unchanged inventories are not written: a no-op sync sends no mutating request.
        let union = stored.inventory.union(&desired_inventory);
        let recorded = if union == stored.inventory {
            stored.clone()
        } else {
            store.save(&stored, &union).await?
        };
        tracing::debug!(app = %app.id, elapsed_ms = started.elapsed().as_millis(), "inventory recorded");
        let options = ApplyOptions {
            conflicts: app.policy.conflicts,
            prune,
            propagation: app.policy.propagation.clone(),
            replace: app.policy.replace,
            ..Default::default()
        };
        let changes = match capstan_apply::apply(&self.cluster, &plan, &options)
            .instrument(Stage::Apply.span())
            .await
        {
            Ok(changes) => changes,
            Err(source) => {
                return Err(EngineError::Apply {
                    app: app.id.to_string(),
                    plan: Box::new(plan),
                    source,
                });
            }
        };
        tracing::debug!(app = %app.id, elapsed_ms = started.elapsed().as_millis(), "applied");
        if prune {
            // Prune succeeded: keep only what is still ours to track.
            let mut remaining = desired_inventory;
            for candidate in &plan.prune {
                if candidate.decision == PruneDecision::Disabled {
                    remaining.insert(candidate.object.clone());
                }
            }
            if remaining != recorded.inventory {
                store.save(&recorded, &remaining).await?;
            }
        }
        Ok(SyncReport { plan, changes })
    }

    /// The objects the app's inventory lists.
    pub async fn inventory(&self, app: &App) -> Result<Vec<ObjectRef>, EngineError> {
        let stored = self.store(app).load().await?;
        Ok(stored.inventory.iter().cloned().collect())
    }

    /// Removes everything the app owns (as an empty sync with prune), then its inventory.
    pub async fn delete(&self, app: &App) -> Result<ChangeSet, EngineError> {
        let allow_empty = App {
            policy: Policy {
                allow_empty: true,
                ..app.policy.clone()
            },
            ..app.clone()
        };
        let report = self
            .sync(
                &allow_empty,
                Vec::new(),
                &SyncRequest {
                    prune: true,
                    expected_plan: None,
                },
            )
            .await?;
        self.store(app).delete().await?;
        Ok(report.changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeCluster;
    use capstan_health::{HealthRules, HealthStatus};
    use serde_json::json;

    fn app(prune: bool) -> App {
        App {
            id: AppId::new("apps", "shop"),
            destination_namespace: "shop".into(),
            policy: Policy {
                prune,
                ..Default::default()
            },
        }
    }

    fn config_map(name: &str) -> DesiredObject {
        DesiredObject {
            object: serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                "data": {"k": "v"}
            }))
            .expect("object"),
            provenance: format!("{name}.yaml#0"),
        }
    }

    fn desired(names: &[&str]) -> Vec<DesiredObject> {
        names.iter().map(|name| config_map(name)).collect()
    }

    async fn inventory(engine: &Engine<FakeCluster>, app: &App) -> Vec<String> {
        let mut names: Vec<String> = engine
            .inventory(app)
            .await
            .expect("inventory")
            .into_iter()
            .map(|o| o.name)
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn the_first_sync_gives_the_inventory_a_home_and_prune_shrinks_it() {
        let fake = FakeCluster::with_namespaces(&["shop"]);
        let engine = Engine::new(fake.clone());
        let app = app(true);
        let report = engine
            .sync(&app, desired(&["a", "b"]), &SyncRequest::default())
            .await
            .expect("first sync");
        assert_eq!(report.changes.count(capstan_apply::Outcome::Created), 2);
        assert!(fake.has_namespace("apps"), "the inventory's namespace");
        assert_eq!(inventory(&engine, &app).await, vec!["a", "b"]);

        let report = engine
            .sync(&app, desired(&["a"]), &SyncRequest::default())
            .await
            .expect("second sync");
        assert_eq!(report.changes.count(capstan_apply::Outcome::Pruned), 1);
        assert_eq!(fake.names(), vec!["a"]);
        assert_eq!(inventory(&engine, &app).await, vec!["a"]);
    }

    #[tokio::test]
    async fn a_no_op_sync_sends_no_write() {
        let fake = FakeCluster::with_namespaces(&["shop"]);
        let engine = Engine::new(fake.clone());
        let app = app(true);
        engine
            .sync(&app, desired(&["a", "b"]), &SyncRequest::default())
            .await
            .expect("first sync");
        let writes = fake.logged("apply").len() + fake.logged("write").len();
        let report = engine
            .sync(&app, desired(&["a", "b"]), &SyncRequest::default())
            .await
            .expect("no-op sync");
        assert!(!report.plan.has_changes(true));
        assert_eq!(
            fake.logged("apply").len() + fake.logged("write").len(),
            writes,
            "{:?}",
            fake.log()
        );
    }

    #[tokio::test]
    async fn an_empty_render_never_prunes_an_app_that_has_objects() {
        let fake = FakeCluster::with_namespaces(&["shop"]);
        let engine = Engine::new(fake.clone());
        let app = app(true);
        engine
            .sync(&app, desired(&["a"]), &SyncRequest::default())
            .await
            .expect("sync");
        let log = fake.log().len();
        let err = engine
            .sync(&app, Vec::new(), &SyncRequest::default())
            .await
            .expect_err("empty render");
        assert!(
            matches!(err, EngineError::EmptyRender { count: 1, .. }),
            "{err}"
        );
        assert_eq!(fake.log().len(), log, "nothing planned or written");
        assert_eq!(fake.names(), vec!["a"]);

        // Deleting the app is an empty sync that may prune: everything goes, then the inventory.
        let changes = engine.delete(&app).await.expect("delete");
        assert_eq!(changes.count(capstan_apply::Outcome::Pruned), 1);
        assert!(fake.names().is_empty());
        assert!(inventory(&engine, &app).await.is_empty());
    }

    #[tokio::test]
    async fn a_stale_plan_is_refused_before_anything_is_written() {
        let fake = FakeCluster::with_namespaces(&["shop"]);
        let engine = Engine::new(fake.clone());
        let app = app(false);
        let plan = engine.plan(&app, desired(&["a"])).await.expect("plan");
        let request = SyncRequest {
            prune: false,
            expected_plan: Some(format!("{}-stale", plan.hash)),
        };
        let err = engine
            .sync(&app, desired(&["a"]), &request)
            .await
            .expect_err("stale plan");
        assert!(matches!(err, EngineError::PlanChanged { .. }), "{err}");
        assert!(fake.logged("apply").is_empty() && fake.logged("write").is_empty());

        let request = SyncRequest {
            prune: false,
            expected_plan: Some(plan.hash),
        };
        engine
            .sync(&app, desired(&["a"]), &request)
            .await
            .expect("the reviewed plan");
        assert_eq!(fake.names(), vec!["a"]);
    }

    #[tokio::test]
    async fn a_failed_apply_keeps_every_object_in_the_inventory_and_prunes_nothing() {
        let fake = FakeCluster::with_namespaces(&["shop"]);
        let engine = Engine::new(fake.clone());
        let app = app(true);
        engine
            .sync(&app, desired(&["old", "a"]), &SyncRequest::default())
            .await
            .expect("first sync");
        fake.refuse("bad", 403, "Forbidden");
        let err = engine
            .sync(&app, desired(&["a", "b", "bad"]), &SyncRequest::default())
            .await
            .expect_err("refused");
        assert!(matches!(err, EngineError::Apply { .. }), "{err}");
        assert!(err.is_forbidden() && !err.is_conflict());
        assert!(fake.logged("delete").is_empty(), "{:?}", fake.log());
        assert_eq!(fake.names(), vec!["a", "b", "old"]);
        // previous ∪ desired was recorded before the apply: nothing is lost track of.
        assert_eq!(inventory(&engine, &app).await, vec!["a", "b", "bad", "old"]);
    }

    #[tokio::test]
    async fn health_reads_every_object() {
        let fake = FakeCluster::with_namespaces(&["shop"]);
        let engine = Engine::new(fake.clone());
        let app = app(false);
        let report = engine
            .sync(&app, desired(&["a"]), &SyncRequest::default())
            .await
            .expect("sync");
        let mut objects: Vec<ObjectRef> = report.changes.written().cloned().collect();
        let mut missing = objects[0].clone();
        missing.name = "missing".into();
        objects.push(missing);
        let health = engine
            .health(&objects, &HealthRules::default())
            .await
            .expect("health");
        let statuses: Vec<HealthStatus> = health.iter().map(|(_, h)| h.status).collect();
        assert_eq!(
            statuses,
            vec![HealthStatus::Current, HealthStatus::NotFound]
        );
    }
}
