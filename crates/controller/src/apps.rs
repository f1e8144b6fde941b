//! The Application controller: a thin loop around the engine. Each reconciliation takes the app's
//! GitRepository artifact (or its pinned commit), renders the app's path, plans or syncs through
//! `capstan_engine::Engine`, reads health, and writes one status.
//!
//! Failure rules: a fetch or render failure changes nothing in the cluster (the engine is not even
//! called); a plan failure writes nothing either (the engine's own rule); only an apply failure can
//! leave a partial change, and the inventory written before it keeps prune exact.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use capstan_apply::{Conflicts, Outcome as Applied};
use capstan_core::ownership::AppId;
use capstan_engine::{App, EngineError, Policy, SyncRequest};
use capstan_health::{HealthRules, HealthStatus as Verdict};
use capstan_plan::{Action as PlanAction, Plan};
use capstan_render::{HelmOptions, JsonnetOptions, JsonnetValue, RenderOptions};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use crate::api::{
    Application, ApplicationStatus, DriftedObject, HealthStatus, HistoryEntry, InventorySummary,
    PIN_ANNOTATION, PlanSummary, REQUESTED_AT_ANNOTATION, SyncStatus, parse_duration,
};
use crate::conditions::{Outcome, conditions, is_ready};
use crate::{Context, ControllerError, now};

const HISTORY: usize = 10;
/// How soon to look again while objects are still progressing.
const PROGRESS_POLL: Duration = Duration::from_secs(2);

/// Why this reconciliation runs, as recorded in the history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    Manual,
    Rollback,
    Spec,
    Source,
    /// A live object differs from Git while nothing else changed.
    Drift,
    Interval,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::Rollback => "rollback",
            Trigger::Spec => "spec",
            Trigger::Source => "source",
            Trigger::Drift => "drift",
            Trigger::Interval => "interval",
        }
    }
}

pub async fn reconcile(
    app: Arc<Application>,
    ctx: Arc<Context>,
) -> Result<Action, ControllerError> {
    let _busy = ctx.metrics.in_flight("application");
    let started = Instant::now();
    let timeout = parse_duration(&app.spec.timeout).unwrap_or(Duration::from_secs(300));
    let result = match tokio::time::timeout(timeout, reconcile_inner(&app, &ctx)).await {
        Ok(result) => result,
        Err(_) => {
            let outcome = Outcome::Failed {
                reason: "Timeout".into(),
                message: format!("reconciliation did not finish within {timeout:?}"),
            };
            write_status(&ctx, &app, app.status.clone().unwrap_or_default(), &outcome).await?;
            Err(ControllerError::Reconcile {
                app: key(&app),
                message: outcome.message().to_string(),
            })
        }
    };
    ctx.metrics.observe_stage("total", started.elapsed());
    if result.is_ok() {
        ctx.reset_backoff(&format!("app/{}", key(&app)));
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

async fn reconcile_inner(app: &Application, ctx: &Context) -> Result<Action, ControllerError> {
    let namespace = app.namespace().unwrap_or_default();
    let previous = app.status.clone().unwrap_or_default();
    let interval =
        parse_duration(&app.spec.sync_policy.interval).unwrap_or(Duration::from_secs(300));
    if app.spec.suspend {
        return Ok(Action::await_change());
    }
    let mut status = previous.clone();
    status.observed_generation = app.metadata.generation;

    // Dependencies first: nothing is fetched or rendered for an app that may not sync yet.
    match ctx.dependency_state(app) {
        Dependencies::Ready => {}
        Dependencies::Cycle(path) => {
            let outcome = Outcome::Stalled {
                reason: "DependencyCycle".into(),
                message: format!("dependsOn forms a cycle: {path}"),
            };
            write_status(ctx, app, status, &outcome).await?;
            return Ok(Action::await_change());
        }
        Dependencies::Waiting(which) => {
            let outcome = Outcome::Progressing {
                reason: "DependencyNotReady".into(),
                message: format!("waiting for {which} to be Ready"),
            };
            write_status(ctx, app, status, &outcome).await?;
            // A dependency turning Ready triggers this app; the requeue is a safety net.
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
    }

    // Source: the shared artifact, or the pinned commit.
    let fetch_started = Instant::now();
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
                write_status(ctx, app, status, &outcome).await?;
                return Ok(Action::requeue(Duration::from_secs(10)));
            }
        },
        Some(commit) => {
            match fetch_pinned(ctx, &namespace, &app.spec.source_ref.name, commit).await {
                Ok(artifact) => Arc::new(artifact),
                Err(error) => {
                    let outcome = Outcome::Failed {
                        reason: "FetchFailed".into(),
                        message: format!("pinned revision {commit}: {error}"),
                    };
                    write_status(ctx, app, status, &outcome).await?;
                    return Err(error);
                }
            }
        }
    };
    status.pinned_revision = pinned.clone();
    ctx.metrics.observe_stage("fetch", fetch_started.elapsed());

    // Render: a failure renders nothing and touches nothing.
    let render_started = Instant::now();
    let desired = match render(ctx, app, &artifact.checkout).await {
        Ok(desired) => desired,
        Err(message) => {
            let outcome = Outcome::Stalled {
                reason: "RenderFailed".into(),
                message: format!("revision {}: {message}", artifact.revision),
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
            record_failure(&mut status, &artifact.revision, Trigger::Source, &outcome);
            write_status(ctx, app, status, &outcome).await?;
            return Ok(Action::requeue(interval));
        }
    };
    ctx.metrics
        .observe_stage("render", render_started.elapsed());

    let engine = ctx.engine_for(app)?;
    let engine_app = engine_app(app)?;
    let rules = health_rules(app)?;
    let requested = app.annotations().get(REQUESTED_AT_ANNOTATION).cloned();
    let trigger = if requested.is_some() && requested != previous.last_handled_request {
        Trigger::Manual
    } else if pinned.is_some() && pinned != previous.pinned_revision {
        Trigger::Rollback
    } else if previous.observed_generation != app.metadata.generation {
        Trigger::Spec
    } else if previous.sync.as_ref().map(|s| &s.revision) != Some(&artifact.revision) {
        Trigger::Source
    } else {
        Trigger::Interval
    };
    status.last_handled_request = requested;

    // A monorepo commit wakes every app of the repository; for an app whose rendered objects did
    // not change and that was in sync, the new revision changes nothing: record it and stop. (Live
    // drift is still caught by the drift watches and the interval.)
    let inputs = desired_digest(&desired);
    let key = key(app);
    let settled = status.sync.as_ref().is_some_and(|s| s.status == "Synced")
        && is_ready(&previous.conditions, app.metadata.generation);
    if trigger == Trigger::Source && settled && ctx.same_inputs(&key, inputs) {
        if let Some(sync) = status.sync.as_mut() {
            sync.revision = artifact.revision.clone();
        }
        let outcome = Outcome::Ready {
            reason: "Synced".into(),
            message: format!("unchanged at {}", artifact.revision),
        };
        write_status(ctx, app, status, &outcome).await?;
        return Ok(Action::requeue(interval));
    }

    let sync_started = Instant::now();
    let policy = &app.spec.sync_policy;
    // New revisions, spec changes, rollbacks and manual requests sync at once (automated apps): the
    // sync plans itself, so a separate plan would dry-run every object twice. Otherwise plan first:
    // it says whether anything differs (and who changed it) without writing.
    let sync_directly = trigger == Trigger::Manual
        || (policy.automated
            && matches!(trigger, Trigger::Source | Trigger::Spec | Trigger::Rollback));
    let (planned, differs, drifted, trigger) = if sync_directly {
        (None, true, Vec::new(), trigger)
    } else {
        let plan = match engine.plan(&engine_app, desired.clone()).await {
            Ok(plan) => plan,
            Err(error) => {
                return engine_failed(ctx, app, status, &artifact.revision, trigger, error).await;
            }
        };
        let drifted = drifted_objects(&plan);
        let differs = plan.has_changes(policy.prune);
        let trigger = if trigger == Trigger::Interval && differs {
            ctx.metrics.drift_events.inc();
            Trigger::Drift
        } else {
            trigger
        };
        (Some(plan), differs, drifted, trigger)
    };
    // Automated apps sync new revisions, spec changes and manual requests; drift only with selfHeal.
    let wants_sync = sync_directly
        || (policy.automated && differs && (trigger != Trigger::Drift || policy.self_heal));
    let mut sync_message = None;
    let plan = match planned {
        Some(plan) if !wants_sync => plan,
        _ => {
            let request = SyncRequest {
                prune: policy.prune,
                expected_plan: None,
            };
            match engine.sync(&engine_app, desired, &request).await {
                Ok(report) => {
                    let applied = report.changes.count(Applied::Created)
                        + report.changes.count(Applied::Configured)
                        + report.changes.count(Applied::Replaced);
                    let pruned = report.changes.count(Applied::Pruned);
                    ctx.metrics.objects_applied.inc_by(applied as u64);
                    ctx.metrics.objects_pruned.inc_by(pruned as u64);
                    let message = format!(
                        "applied {applied} object(s), pruned {pruned} at {}",
                        artifact.revision
                    );
                    if applied + pruned > 0 {
                        ctx.kube
                            .event(app, false, "Synced", "Sync", message.clone())
                            .await;
                    }
                    sync_message = Some(message);
                    report.plan
                }
                Err(error) => {
                    return engine_failed(ctx, app, status, &artifact.revision, trigger, error)
                        .await;
                }
            }
        }
    };
    ctx.metrics.observe_stage("sync", sync_started.elapsed());
    let in_sync = sync_message.is_some() || !differs;
    status.sync = Some(SyncStatus {
        status: if in_sync { "Synced" } else { "OutOfSync" }.into(),
        revision: artifact.revision.clone(),
    });
    status.drift = if sync_message.is_some() {
        Vec::new()
    } else {
        drifted
    };
    status.last_plan = Some(plan_summary(&plan));
    if let Some(message) = &sync_message {
        push_history(
            &mut status,
            HistoryEntry {
                revision: artifact.revision.clone(),
                time: now(),
                result: "Succeeded".into(),
                trigger: trigger.as_str().into(),
                message: message.clone(),
            },
        );
    }

    // Health of everything the app owns now.
    let health_started = Instant::now();
    let objects = engine
        .inventory(&engine_app)
        .await
        .map_err(|e| engine_error(app, e))?;
    ctx.drift.watch(&objects);
    let mut kinds = BTreeMap::new();
    for object in &objects {
        *kinds.entry(object.kind.clone()).or_insert(0) += 1;
    }
    status.inventory = Some(InventorySummary {
        objects: objects.len(),
        kinds,
    });
    let health = engine
        .health(&objects, &rules)
        .await
        .map_err(|e| engine_error(app, e))?;
    let summary = capstan_health::summarize(&health);
    ctx.metrics
        .observe_stage("health", health_started.elapsed());
    let health_message = summary
        .pending
        .iter()
        .take(3)
        .map(|(object, health)| format!("{object}: {}", health.message))
        .collect::<Vec<_>>()
        .join("; ");
    status.health = Some(HealthStatus {
        status: format!("{:?}", summary.status),
        message: health_message.clone(),
    });
    let outcome = match summary.status {
        Verdict::Current if in_sync => Outcome::Ready {
            reason: "Synced".into(),
            message: format!(
                "{} object(s) at {} are healthy",
                summary.total, artifact.revision
            ),
        },
        Verdict::Current => Outcome::Progressing {
            reason: "OutOfSync".into(),
            message: format!(
                "{} object(s) differ from {}",
                plan.changes
                    .iter()
                    .filter(|c| c.action != PlanAction::Unchanged && !c.hook)
                    .count()
                    + plan.prunes().count(),
                artifact.revision
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
    write_status(ctx, app, status, &outcome).await?;
    if became_ready {
        ctx.trigger_dependents(app);
    }
    Ok(Action::requeue(if progressing {
        PROGRESS_POLL
    } else {
        interval
    }))
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

async fn render(
    ctx: &Context,
    app: &Application,
    checkout: &std::path::Path,
) -> Result<Vec<capstan_plan::DesiredObject>, String> {
    let options = render_options(app)?;
    let engine = ctx.renderer.clone();
    let root = checkout.to_path_buf();
    let path = std::path::PathBuf::from(&app.spec.path);
    let shown = app.spec.path.clone();
    let rendered = tokio::task::spawn_blocking(move || engine.render(&root, &path, &options))
        .await
        .map_err(|e| format!("render task failed: {e}"))?
        .map_err(|e| format!("rendering {shown}: {e}"))?;
    capstan_engine::desired_objects(&rendered).map_err(|e| e.to_string())
}

fn render_options(app: &Application) -> Result<RenderOptions, String> {
    let spec = &app.spec.render;
    let renderer = spec
        .renderer
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: String| format!("spec.render.renderer: {e}"))?;
    let helm = spec.helm.clone().unwrap_or_default();
    let jsonnet = spec.jsonnet.clone().unwrap_or_default();
    let variables = |field: &str, list: &[crate::api::JsonnetVariable]| {
        let mut map = BTreeMap::new();
        for variable in list {
            let value = if variable.code {
                JsonnetValue::Code(variable.value.clone())
            } else {
                JsonnetValue::String(variable.value.clone())
            };
            if map.insert(variable.name.clone(), value).is_some() {
                return Err(format!(
                    "spec.render.jsonnet.{field}: {:?} is given twice",
                    variable.name
                ));
            }
        }
        Ok(map)
    };
    Ok(RenderOptions {
        renderer,
        include: spec.include.clone(),
        exclude: spec.exclude.clone(),
        helm: HelmOptions {
            release_name: helm.release_name,
            namespace: Some(app.spec.destination.namespace.clone()),
            values_files: helm.values_files,
            values: helm.values,
            ..Default::default()
        },
        jsonnet: JsonnetOptions {
            main: jsonnet.main,
            ext_vars: variables("extVars", &jsonnet.ext_vars)?,
            tlas: variables("tlas", &jsonnet.tlas)?,
            jpath: jsonnet.jpath,
        },
        ..Default::default()
    })
}

fn engine_app(app: &Application) -> Result<App, ControllerError> {
    let policy = &app.spec.sync_policy;
    let conflicts = match policy.conflicts.as_str() {
        "TakeOwnership" => Conflicts::TakeOwnership,
        "Fail" => Conflicts::Fail,
        other => {
            return Err(ControllerError::InvalidSpec {
                field: "spec.syncPolicy.conflicts".into(),
                message: format!("{other:?} is not TakeOwnership or Fail"),
            });
        }
    };
    Ok(App {
        id: AppId::new(app.namespace().unwrap_or_default(), app.name_any()),
        destination_namespace: app.spec.destination.namespace.clone(),
        policy: Policy {
            prune: policy.prune,
            conflicts,
            replace: policy.replace,
            // The plan checks the rules (bad pointers stall the app naming the rule).
            ignore_differences: app
                .spec
                .ignore_differences
                .iter()
                .map(|rule| capstan_plan::IgnoreDifference {
                    group: rule.group.clone(),
                    kind: rule.kind.clone(),
                    name: rule.name.clone(),
                    namespace: rule.namespace.clone(),
                    json_pointers: rule.json_pointers.clone(),
                    managers: rule.managers.clone(),
                })
                .collect(),
            ..Default::default()
        },
    })
}

fn health_rules(app: &Application) -> Result<HealthRules, ControllerError> {
    let mut rules = HealthRules::new();
    for (index, check) in app.spec.health_checks.iter().enumerate() {
        rules
            .add(&check.group, &check.kind, &check.cel)
            .map_err(|e| ControllerError::InvalidSpec {
                field: format!("spec.healthChecks[{index}]"),
                message: e.to_string(),
            })?;
    }
    Ok(rules)
}

/// A digest of the desired objects (as rendered, before the plan marks them), to tell whether a new
/// revision changed anything for this app.
fn desired_digest(desired: &[capstan_plan::DesiredObject]) -> u64 {
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

fn push_history(status: &mut ApplicationStatus, entry: HistoryEntry) {
    status.history.insert(0, entry);
    status.history.truncate(HISTORY);
}

fn record_failure(
    status: &mut ApplicationStatus,
    revision: &str,
    trigger: Trigger,
    outcome: &Outcome,
) {
    // One entry per failing revision, not one per retry.
    let repeated = status.history.first().is_some_and(|h| {
        h.revision == revision && h.result == "Failed" && h.message == outcome.message()
    });
    if !repeated {
        push_history(
            status,
            HistoryEntry {
                revision: revision.to_string(),
                time: now(),
                result: "Failed".into(),
                trigger: trigger.as_str().into(),
                message: crate::conditions::truncate(outcome.message(), 1024),
            },
        );
    }
}

/// Plan and apply failures: rejected objects and RBAC denials stall (they need a new commit or a
/// rights change); anything else fails and is retried with backoff.
async fn engine_failed(
    ctx: &Context,
    app: &Application,
    mut status: ApplicationStatus,
    revision: &str,
    trigger: Trigger,
    error: EngineError,
) -> Result<Action, ControllerError> {
    let message = error.to_string();
    let forbidden = message.contains("forbidden") || message.contains("Forbidden");
    let outcome = match &error {
        _ if forbidden => Outcome::Stalled {
            reason: "Forbidden".into(),
            message: message.clone(),
        },
        EngineError::Plan { .. }
        | EngineError::EmptyRender { .. }
        | EngineError::NotAnObject { .. } => Outcome::Stalled {
            reason: "PlanFailed".into(),
            message: message.clone(),
        },
        _ => Outcome::Failed {
            reason: "SyncFailed".into(),
            message: message.clone(),
        },
    };
    ctx.kube
        .event(app, true, outcome.reason(), "Sync", message.clone())
        .await;
    record_failure(&mut status, revision, trigger, &outcome);
    if let Some(sync) = &mut status.sync {
        sync.status = "OutOfSync".into();
    }
    let stalled = matches!(outcome, Outcome::Stalled { .. });
    write_status(ctx, app, status, &outcome).await?;
    if stalled {
        let interval =
            parse_duration(&app.spec.sync_policy.interval).unwrap_or(Duration::from_secs(300));
        return Ok(Action::requeue(interval));
    }
    Err(ControllerError::Reconcile {
        app: key(app),
        message,
    })
}

fn engine_error(app: &Application, error: EngineError) -> ControllerError {
    ControllerError::Reconcile {
        app: key(app),
        message: error.to_string(),
    }
}

async fn write_status(
    ctx: &Context,
    app: &Application,
    mut status: ApplicationStatus,
    outcome: &Outcome,
) -> Result<(), ControllerError> {
    let previous = app.status.clone().unwrap_or_default();
    status.conditions = conditions(
        &previous.conditions,
        outcome,
        app.metadata.generation,
        &now(),
    );
    if app.status.as_ref() != Some(&status) {
        ctx.kube.patch_status(app, &status).await?;
    }
    Ok(())
}

/// What `dependsOn` allows now.
pub enum Dependencies {
    Ready,
    /// The first dependency that is missing or not Ready.
    Waiting(String),
    /// A cycle through this app, e.g. `ns/a → ns/b → ns/a`.
    Cycle(String),
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

    #[test]
    fn history_keeps_the_last_ten_newest_first() {
        let mut status = ApplicationStatus::default();
        for i in 0..12 {
            push_history(
                &mut status,
                HistoryEntry {
                    revision: format!("r{i}"),
                    ..Default::default()
                },
            );
        }
        assert_eq!(status.history.len(), 10);
        assert_eq!(status.history[0].revision, "r11");
        let failed = Outcome::Stalled {
            reason: "RenderFailed".into(),
            message: "bad".into(),
        };
        record_failure(&mut status, "r12", Trigger::Source, &failed);
        record_failure(&mut status, "r12", Trigger::Interval, &failed);
        assert_eq!(
            status
                .history
                .iter()
                .filter(|h| h.revision == "r12")
                .count(),
            1
        );
    }
}
