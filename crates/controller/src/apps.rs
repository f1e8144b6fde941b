//! The Application controller: a thin loop around the engine, as decide → act → report.
//!
//! Each reconciliation is admitted ([`decide::admit`]: suspend, `dependsOn`), takes the app's
//! GitRepository artifact (or its pinned commit), renders the app's path through the engine's front
//! half, names its trigger, and then follows [`decide::decide`]: record a new revision that changes
//! nothing, plan, sync, or report. Health is read for everything the app owns, and
//! [`status::build`] writes one status.
//!
//! Failure rules: a fetch or render failure changes nothing in the cluster (the engine is not even
//! called); a plan failure writes nothing either (the engine's own rule); only an apply failure can
//! leave a partial change, and the inventory written before it keeps prune exact.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use capstan_api::crd::{
    Application, DriftedObject, HealthState, HealthStatus, InventorySummary, PIN_ANNOTATION,
    PlanSummary, REQUESTED_AT_ANNOTATION, SyncResult, SyncState, Trigger,
};
use capstan_core::ownership::AppId;
use capstan_engine::apply::Outcome as Applied;
use capstan_engine::health::HealthStatus as Verdict;
use capstan_engine::plan::{Action as PlanAction, DesiredObject, Plan};
use capstan_engine::{App, Checkout, EngineError, Stage, SyncRequest};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::Instrument;

use crate::conditions::{Outcome, is_ready};
pub use crate::decide::Dependencies;
use crate::decide::{self, Admission, Changes, Decision, PlanFacts, Situation};
use crate::status::{self, History, Report};
use crate::{Context, ControllerError, now};

/// How soon to look again while objects are still progressing.
const PROGRESS_POLL: Duration = Duration::from_secs(2);
/// How soon to look again while the GitRepository has no artifact.
const SOURCE_POLL: Duration = Duration::from_secs(10);

pub async fn reconcile(
    app: Arc<Application>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    let _busy = ctx.metrics.in_flight("application");
    let timeout = app.spec.timeout;
    let span = tracing::info_span!(target: "capstan::stage", "total", app = %key(&app));
    let result = match tokio::time::timeout(timeout, reconcile_inner(&app, &ctx))
        .instrument(span)
        .await
    {
        Ok(result) => result,
        Err(_) => {
            let error = ControllerError::Timeout {
                what: format!("Application {}", key(&app)),
                after: timeout,
            };
            let outcome = Outcome::Failed {
                reason: "Timeout".into(),
                message: format!("reconciliation did not finish within {timeout:?}"),
            };
            write_status(&ctx, &app, &report_for(&app), &outcome).await?;
            Err(error)
        }
    };
    match &result {
        Ok(_) => ctx.reset_backoff(&format!("app/{}", key(&app))),
        Err(error) => ctx.metrics.reconcile_error(error),
    }
    let label = if result.is_ok() { "success" } else { "error" };
    ctx.metrics
        .reconciles
        .get_or_create(&crate::metrics::ResultLabels { result: label })
        .inc();
    ctx.refresh_app_counts();
    result
}

fn key(app: &Application) -> String {
    format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any())
}

/// A report that only records the generation this reconciliation saw.
fn report_for(app: &Application) -> Report {
    Report {
        generation: app.metadata.generation,
        ..Default::default()
    }
}

async fn reconcile_inner(app: &Application, ctx: &Context) -> Result<Action, ControllerError> {
    let namespace = app.namespace().unwrap_or_default();
    let previous = app.status.clone().unwrap_or_default();
    let spec = app.spec.app_spec();
    let interval = spec.sync_policy.interval;
    let mut report = report_for(app);

    // Dependencies first: nothing is fetched or rendered for an app that may not sync yet.
    match decide::admit(app.spec.suspend, &ctx.dependency_state(app)) {
        Admission::Proceed => {}
        Admission::Suspended => return Ok(Action::await_change()),
        Admission::Cycle { path } => {
            let outcome = Outcome::Stalled {
                reason: "DependencyCycle".into(),
                message: format!("dependsOn forms a cycle: {path}"),
            };
            write_status(ctx, app, &report, &outcome).await?;
            return Ok(Action::await_change());
        }
        Admission::Waiting { which, requeue } => {
            let outcome = Outcome::Progressing {
                reason: "DependencyNotReady".into(),
                message: format!("waiting for {which} to be Ready"),
            };
            write_status(ctx, app, &report, &outcome).await?;
            return Ok(Action::requeue(requeue));
        }
    }

    // Source: the shared artifact, or the pinned commit.
    let pinned = app.annotations().get(PIN_ANNOTATION).cloned();
    let artifact = match &pinned {
        None => match ctx
            .artifacts
            .get(&namespace, &app.spec.source_ref.name)
            .filter(|a| a.checkout.exists())
        {
            Some(artifact) => artifact,
            None => {
                let outcome = Outcome::Progressing {
                    reason: "SourceNotReady".into(),
                    message: format!(
                        "GitRepository {namespace}/{} has no artifact yet",
                        app.spec.source_ref.name
                    ),
                };
                write_status(ctx, app, &report, &outcome).await?;
                return Ok(Action::requeue(SOURCE_POLL));
            }
        },
        Some(commit) => {
            let fetched = fetch_pinned(ctx, &namespace, &app.spec.source_ref.name, commit)
                .instrument(Stage::Source.span())
                .await;
            match fetched {
                Ok(artifact) => Arc::new(artifact),
                Err(error) => {
                    let outcome = Outcome::Failed {
                        reason: "FetchFailed".into(),
                        message: format!("pinned revision {commit}: {error}"),
                    };
                    write_status(ctx, app, &report, &outcome).await?;
                    return Err(error);
                }
            }
        }
    };
    report.pinned_revision = Some(pinned.clone());
    let revision = artifact.revision.clone();
    let app_span = capstan_engine::stage::app_span(&app_id(app), &revision);

    // Render: a failure renders nothing and touches nothing.
    let desired = match render(ctx, app, &artifact.checkout)
        .instrument(app_span.clone())
        .await
    {
        Ok(desired) => desired,
        Err(error) => {
            let outcome = Outcome::Stalled {
                reason: "RenderFailed".into(),
                message: format!("revision {revision}: {error}"),
            };
            ctx.kube
                .event(
                    app,
                    true,
                    "RenderFailed",
                    "Render",
                    outcome.message().to_string(),
                )
                .await;
            report.history = Some(History {
                revision,
                trigger: Trigger::Source,
                result: SyncResult::Failed,
                message: outcome.message().to_string(),
            });
            write_status(ctx, app, &report, &outcome).await?;
            return Ok(Action::requeue(interval));
        }
    };

    let engine = ctx.engine_for(app)?;
    let engine_app = App::new(app_id(app), &spec);
    let rules = capstan_engine::spec::health_rules(&spec)?;
    let requested = app.annotations().get(REQUESTED_AT_ANNOTATION).cloned();
    let trigger = decide::trigger(&Changes {
        requested: requested.is_some() && requested != previous.last_handled_request,
        pin_changed: pinned.is_some() && pinned != previous.pinned_revision,
        spec_changed: previous.observed_generation != app.metadata.generation,
        new_revision: previous.sync.as_ref().map(|s| &s.revision) != Some(&revision),
    });
    report.last_handled_request = Some(requested);

    // A monorepo commit wakes every app of the repository; for an app whose rendered objects did
    // not change and that was in sync, the new revision changes nothing. (Live drift is still
    // caught by the drift watches and the interval.)
    let inputs = desired_digest(&desired);
    let key = key(app);
    let settled = previous
        .sync
        .as_ref()
        .is_some_and(|s| s.status == SyncState::Synced)
        && is_ready(&previous.conditions, app.metadata.generation);
    let mut situation = Situation {
        trigger,
        policy: &spec.sync_policy,
        unchanged_inputs: settled && ctx.same_inputs(&key, inputs),
        plan: None,
    };

    // Act on the decisions until one ends the sync step: plan at most once.
    let mut planned: Option<Plan> = None;
    let (plan, trigger, in_sync, synced) = loop {
        match decide::decide(&situation) {
            Decision::RecordRevision => {
                report.sync = Some(SyncState::Synced);
                report.revision = Some(revision.clone());
                let outcome = Outcome::Ready {
                    reason: "Synced".into(),
                    message: format!("unchanged at {revision}"),
                };
                write_status(ctx, app, &report, &outcome).await?;
                return Ok(Action::requeue(interval));
            }
            Decision::Plan => {
                let plan = match engine
                    .plan(&engine_app, desired.clone())
                    .instrument(app_span.clone())
                    .await
                {
                    Ok(plan) => plan,
                    Err(error) => {
                        return engine_failed(ctx, app, report, &revision, trigger, error).await;
                    }
                };
                situation.plan = Some(PlanFacts {
                    changes: plan.has_changes(false),
                    prunes: plan.prunes().next().is_some(),
                });
                planned = Some(plan);
            }
            Decision::Report { trigger, in_sync } => {
                let Some(plan) = planned.take() else {
                    unreachable_plan();
                    return Ok(Action::requeue(interval));
                };
                if trigger == Trigger::Drift {
                    ctx.metrics.drift_events.inc();
                }
                break (plan, trigger, in_sync, None);
            }
            Decision::Sync { trigger } => {
                if trigger == Trigger::Drift {
                    ctx.metrics.drift_events.inc();
                }
                let request = SyncRequest {
                    prune: spec.sync_policy.prune,
                    expected_plan: None,
                };
                match engine
                    .sync(&engine_app, desired, &request)
                    .instrument(app_span.clone())
                    .await
                {
                    Ok(report) => {
                        let applied = report.changes.count(Applied::Created)
                            + report.changes.count(Applied::Configured)
                            + report.changes.count(Applied::Replaced);
                        let pruned = report.changes.count(Applied::Pruned);
                        ctx.metrics.objects_applied.inc_by(applied as u64);
                        ctx.metrics.objects_pruned.inc_by(pruned as u64);
                        let message =
                            format!("applied {applied} object(s), pruned {pruned} at {revision}");
                        tracing::info!(app = %key, %revision, %trigger, applied, pruned, "synced");
                        if applied + pruned > 0 {
                            ctx.kube
                                .event(app, false, "Synced", "Sync", message.clone())
                                .await;
                        }
                        break (report.plan, trigger, true, Some(message));
                    }
                    Err(error) => {
                        return engine_failed(ctx, app, report, &revision, trigger, error).await;
                    }
                }
            }
        }
    };
    report.sync = Some(if in_sync {
        SyncState::Synced
    } else {
        SyncState::OutOfSync
    });
    report.revision = Some(revision.clone());
    report.drift = Some(if synced.is_some() {
        Vec::new()
    } else {
        drifted_objects(&plan)
    });
    report.last_plan = Some(plan_summary(&plan));
    if let Some(message) = synced {
        report.history = Some(History {
            revision: revision.clone(),
            trigger,
            result: SyncResult::Succeeded,
            message,
        });
    }

    // Health of everything the app owns now.
    let objects = engine
        .inventory(&engine_app)
        .await
        .map_err(|source| engine_error(app, source))?;
    ctx.drift.watch(&objects);
    let mut kinds = BTreeMap::new();
    for object in &objects {
        *kinds.entry(object.kind.clone()).or_insert(0) += 1;
    }
    report.inventory = Some(InventorySummary {
        objects: objects.len(),
        kinds,
    });
    let health = engine
        .health(&objects, &rules)
        .instrument(app_span.clone())
        .await
        .map_err(|source| engine_error(app, source))?;
    let summary = capstan_engine::health::summarize(&health);
    let health_message = summary
        .pending
        .iter()
        .take(3)
        .map(|(object, health)| format!("{object}: {}", health.message))
        .collect::<Vec<_>>()
        .join("; ");
    report.health = Some(HealthStatus {
        status: health_state(summary.status),
        message: health_message.clone(),
    });
    let outcome = match summary.status {
        Verdict::Current if in_sync => Outcome::Ready {
            reason: "Synced".into(),
            message: format!("{} object(s) at {revision} are healthy", summary.total),
        },
        Verdict::Current => Outcome::Progressing {
            reason: "OutOfSync".into(),
            message: format!(
                "{} object(s) differ from {revision}",
                plan.changes
                    .iter()
                    .filter(|c| c.action != PlanAction::Unchanged && !c.hook)
                    .count()
                    + plan.prunes().count(),
            ),
        },
        Verdict::Failed => Outcome::Failed {
            reason: "HealthCheckFailed".into(),
            message: health_message,
        },
        _ => Outcome::Progressing {
            reason: "Progressing".into(),
            message: health_message,
        },
    };
    let became_ready =
        outcome.is_ready() && !is_ready(&previous.conditions, app.metadata.generation);
    let progressing = matches!(
        outcome,
        Outcome::Progressing { .. } | Outcome::Failed { .. }
    ) && summary.status != Verdict::Current;
    if outcome.is_ready() {
        ctx.remember_inputs(&key, inputs);
    } else {
        ctx.forget_inputs(&key);
    }
    write_status(ctx, app, &report, &outcome).await?;
    if became_ready {
        ctx.trigger_dependents(app);
    }
    Ok(Action::requeue(if progressing {
        PROGRESS_POLL
    } else {
        interval
    }))
}

/// `decide` asks for a report only after a plan was made; reaching this is a bug, logged.
fn unreachable_plan() {
    tracing::error!("decision to report without a plan");
}

fn app_id(app: &Application) -> AppId {
    AppId::new(app.namespace().unwrap_or_default(), app.name_any())
}

fn health_state(status: Verdict) -> HealthState {
    match status {
        Verdict::Current => HealthState::Current,
        Verdict::InProgress => HealthState::InProgress,
        Verdict::Failed => HealthState::Failed,
        Verdict::Terminating => HealthState::Terminating,
        Verdict::NotFound => HealthState::NotFound,
        Verdict::Unknown => HealthState::Unknown,
    }
}

async fn fetch_pinned(
    ctx: &Context,
    namespace: &str,
    repo: &str,
    commit: &str,
) -> Result<capstan_source::Artifact, ControllerError> {
    let repository = ctx
        .kube
        .repos(Some(namespace))
        .get(repo)
        .await
        .map_err(|source| ControllerError::Kube {
            what: format!("get GitRepository {namespace}/{repo}"),
            source,
        })?;
    let spec =
        crate::sources::source_spec(ctx, namespace, repo, &repository.spec, Some(commit)).await?;
    Ok(ctx.sources.fetch(&spec).await?)
}

/// The engine's front half on the artifact's checkout.
async fn render(
    ctx: &Context,
    app: &Application,
    checkout: &std::path::Path,
) -> Result<Vec<DesiredObject>, EngineError> {
    let options = capstan_engine::spec::render_options(&app.spec.app_spec())?;
    let checkout = Checkout {
        root: checkout.to_path_buf(),
        path: std::path::PathBuf::from(&app.spec.path),
        shown: app.spec.path.clone(),
    };
    capstan_engine::desired::render(ctx.renderer.clone(), checkout, options).await
}

/// A digest of the desired objects (as rendered, before the plan marks them), to tell whether a new
/// revision changed anything for this app.
fn desired_digest(desired: &[DesiredObject]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for object in desired {
        serde_json::to_string(&object.object)
            .unwrap_or_default()
            .hash(&mut hasher);
        object.provenance.hash(&mut hasher);
    }
    hasher.finish()
}

fn drifted_objects(plan: &Plan) -> Vec<DriftedObject> {
    plan.changes
        .iter()
        .filter(|c| !c.drift.is_empty())
        .map(|c| {
            let mut managers: Vec<String> = c
                .drift
                .iter()
                .flat_map(|d| d.managers.iter().cloned())
                .collect();
            managers.sort();
            managers.dedup();
            DriftedObject {
                object: c.object.to_string(),
                managers,
                fields: c.drift.iter().map(|d| d.path.clone()).collect(),
            }
        })
        .collect()
}

fn plan_summary(plan: &Plan) -> PlanSummary {
    PlanSummary {
        create: plan.count(PlanAction::Create),
        update: plan.count(PlanAction::Update),
        replace: plan.count(PlanAction::Replace),
        unchanged: plan.count(PlanAction::Unchanged),
        prune: plan.prunes().count(),
    }
}

/// How a failed plan or sync ends the reconciliation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Failure {
    /// An RBAC denial: needs a rights change.
    Forbidden,
    /// A rejected object, an empty render that would prune, a bad document or spec: needs a new
    /// commit or spec.
    PlanFailed,
    /// Anything else: retried with backoff.
    SyncFailed,
}

/// Sorts an engine error by its type and the API status inside it, never by its text.
fn classify(error: &EngineError) -> Failure {
    if error.is_forbidden() {
        return Failure::Forbidden;
    }
    match error {
        EngineError::Plan { .. }
        | EngineError::EmptyRender { .. }
        | EngineError::NotAnObject { .. }
        | EngineError::Spec(_) => Failure::PlanFailed,
        _ => Failure::SyncFailed,
    }
}

/// Plan and apply failures: rejected objects and RBAC denials stall (they need a new commit or a
/// rights change); anything else fails and is retried with backoff.
async fn engine_failed(
    ctx: &Context,
    app: &Application,
    mut report: Report,
    revision: &str,
    trigger: Trigger,
    error: EngineError,
) -> Result<Action, ControllerError> {
    let message = error.to_string();
    let (outcome, stalled) = match classify(&error) {
        Failure::Forbidden => (
            Outcome::Stalled {
                reason: "Forbidden".into(),
                message: message.clone(),
            },
            true,
        ),
        Failure::PlanFailed => (
            Outcome::Stalled {
                reason: "PlanFailed".into(),
                message: message.clone(),
            },
            true,
        ),
        Failure::SyncFailed => (
            Outcome::Failed {
                reason: "SyncFailed".into(),
                message: message.clone(),
            },
            false,
        ),
    };
    tracing::info!(app = %key(app), trigger = %trigger, reason = outcome.reason(), %message, "sync failed");
    ctx.kube
        .event(app, true, outcome.reason(), "Sync", message.clone())
        .await;
    report.history = Some(History {
        revision: revision.to_string(),
        trigger,
        result: SyncResult::Failed,
        message,
    });
    // Out of sync, at the revision last synced or compared.
    report.sync = Some(SyncState::OutOfSync);
    write_status(ctx, app, &report, &outcome).await?;
    if stalled {
        return Ok(Action::requeue(app.spec.sync_policy.interval));
    }
    Err(engine_error(app, error))
}

fn engine_error(app: &Application, source: EngineError) -> ControllerError {
    ControllerError::Engine {
        app: key(app),
        source: Box::new(source),
    }
}

async fn write_status(
    ctx: &Context,
    app: &Application,
    report: &Report,
    outcome: &Outcome,
) -> Result<(), ControllerError> {
    let previous = app.status.clone().unwrap_or_default();
    let status = status::build(&previous, report, outcome, &now());
    if app.status.as_ref() != Some(&status) {
        ctx.kube.patch_status(app, &status).await?;
    }
    Ok(())
}

/// Looks for a dependency cycle reachable from `start` in `edges` (app key → dependency keys).
pub fn find_cycle(start: &str, edges: &dyn Fn(&str) -> Vec<String>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &dyn Fn(&str) -> Vec<String>,
        path: &mut Vec<String>,
        done: &mut std::collections::HashSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges(node) {
            if let Some(cycle) = visit(&next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    visit(start, edges, &mut Vec::new(), &mut Default::default())
}

/// The apps to wake when `app` turns Ready: those that depend on it.
pub fn dependents(app: &Application, all: &[Arc<Application>]) -> Vec<ObjectRef<Application>> {
    let namespace = app.namespace().unwrap_or_default();
    let name = app.name_any();
    all.iter()
        .filter(|other| {
            let other_ns = other.namespace().unwrap_or_default();
            other
                .spec
                .depends_on
                .iter()
                .any(|d| d.name == name && d.namespace.as_deref().unwrap_or(&other_ns) == namespace)
        })
        .map(|other| ObjectRef::from_obj(other.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_are_found_with_their_path() {
        let edges = |node: &str| -> Vec<String> {
            match node {
                "a" => vec!["b".into()],
                "b" => vec!["c".into()],
                "c" => vec!["a".into()],
                "d" => vec!["a".into()],
                _ => vec![],
            }
        };
        assert_eq!(
            find_cycle("a", &edges),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        assert!(find_cycle("d", &edges).is_some(), "d reaches the cycle");
        let acyclic = |node: &str| -> Vec<String> {
            if node == "x" {
                vec!["y".into()]
            } else {
                vec![]
            }
        };
        assert_eq!(find_cycle("x", &acyclic), None);
    }
}
