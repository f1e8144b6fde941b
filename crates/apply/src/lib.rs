//! The apply stage: carries out a [`Plan`] on the cluster, in order, and reports exactly what it changed.
//!
//! Steps follow [`order`]: phase, wave, kind rank. Objects of one step go out in parallel (bounded);
//! steps run one after another, and a step that created CustomResourceDefinitions waits until they are
//! Established before the next one (whose custom resources need them). Unchanged objects are not sent.
//! Server-side apply uses field manager `capstan` and, by default, force: Git takes back every field it
//! declares. An immutable-field rejection is turned into delete + create only when the object or the
//! app opts in (`capstan.dev/sync-options: Replace=true`). Prune runs last, in reverse order, and only
//! deletes candidates the plan marked [`PruneDecision::Delete`] (in the previous inventory and carrying
//! this app's mark). On failure, SyncFail hooks run and the error carries what was changed before it.
//!
//! The cluster is an [`ApplyTarget`]: `capstan_cluster::Cluster` implements it in that crate's adapter
//! module; unit tests use an in-memory fake.

#[cfg(test)]
mod fake;
pub mod order;

use std::future::Future;
use std::time::Duration;

use capstan_core::ObjectRef;
use capstan_core::api::{ClusterError, Deleted, Ownership, PropagationPolicy};
use capstan_core::stage::Stage;
use capstan_health::HealthStatus;
use capstan_plan::hooks;
use capstan_plan::{Action, Change, Plan, PruneDecision, SYNC_OPTIONS_ANNOTATION, replace_allowed};
use futures::{StreamExt, stream};
use kube::api::DynamicObject;
use serde::Serialize;
use tracing::Instrument;

pub use capstan_plan::hooks::Phase;
pub use order::{OrderError, Slot};

const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);
const REPLACE_DELETE_TIMEOUT: Duration = Duration::from_secs(60);
const HOOK_TIMEOUT: Duration = Duration::from_secs(300);

/// What apply needs from the cluster: server-side apply (for real, field manager `capstan`), delete,
/// get (to wait for a replaced object to be gone, for a hook to complete and for a CRD to be
/// Established), and dropping discovery once new CRDs are Established.
pub trait ApplyTarget {
    /// Server-side apply of `desired`, stored; the object as the server stored it.
    fn apply(
        &self,
        desired: &DynamicObject,
        ownership: Ownership,
    ) -> impl Future<Output = Result<DynamicObject, ClusterError>> + Send;
    /// Deletes one object; an object that is already gone is [`Deleted::AlreadyGone`], not an error.
    fn delete(
        &self,
        object: &ObjectRef,
        propagation: PropagationPolicy,
    ) -> impl Future<Output = Result<Deleted, ClusterError>> + Send;
    /// The live object, or `None` when it does not exist.
    fn get(
        &self,
        object: &ObjectRef,
    ) -> impl Future<Output = Result<Option<DynamicObject>, ClusterError>> + Send;
    /// Forgets what the cluster served before: kinds of CRDs just Established become resolvable.
    fn forget_discovery(&self);
}

/// What to do when a field Git declares is owned by another manager.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Conflicts {
    /// Git wins: take the field back (the GitOps contract).
    #[default]
    TakeOwnership,
    /// Stop the sync with an error naming the manager and the fields.
    Fail,
}

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub conflicts: Conflicts,
    pub prune: bool,
    pub propagation: PropagationPolicy,
    /// App-wide `Replace=true`: immutable-field changes delete and re-create the object.
    pub replace: bool,
    /// Objects in flight at once within a step.
    pub concurrency: usize,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            conflicts: Conflicts::default(),
            prune: false,
            propagation: PropagationPolicy::Background,
            replace: false,
            concurrency: 32,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
    /// Deleted and created again because an immutable field changed.
    Replaced,
    Pruned,
}

#[derive(Clone, Debug, Serialize)]
pub struct Applied {
    pub object: ObjectRef,
    pub outcome: Outcome,
}

/// Everything an apply did, in the order it happened.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChangeSet {
    pub entries: Vec<Applied>,
}

impl ChangeSet {
    fn record(&mut self, object: &ObjectRef, outcome: Outcome) {
        self.entries.push(Applied {
            object: object.clone(),
            outcome,
        });
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.entries.iter().filter(|e| e.outcome == outcome).count()
    }

    /// Objects that were created, configured or replaced (what health should wait for).
    pub fn written(&self) -> impl Iterator<Item = &ObjectRef> {
        self.entries
            .iter()
            .filter(|e| {
                matches!(
                    e.outcome,
                    Outcome::Created | Outcome::Configured | Outcome::Replaced
                )
            })
            .map(|e| &e.object)
    }
}

/// Why an apply stopped. Each names the object and, where it came from Git, the file.
#[derive(Debug, thiserror::Error)]
pub enum ApplyFailure {
    #[error("{provenance}: {object}: {source}")]
    Order {
        object: ObjectRef,
        provenance: String,
        #[source]
        source: OrderError,
    },
    #[error("{provenance}: {source}")]
    Rejected {
        object: ObjectRef,
        provenance: String,
        #[source]
        source: Box<ClusterError>,
    },
    #[error(
        "{provenance}: {object}: {message}; set annotation {SYNC_OPTIONS_ANNOTATION}: Replace=true on \
         the object (or replace on the app) to delete and re-create it"
    )]
    Immutable {
        object: ObjectRef,
        provenance: String,
        message: String,
    },
    #[error("{object} is not Established after {timeout:?}: {reason}")]
    CrdNotEstablished {
        object: ObjectRef,
        timeout: Duration,
        reason: String,
    },
    #[error("hook {object} failed: {message}")]
    HookFailed { object: ObjectRef, message: String },
    #[error("hook {object} did not complete within {timeout:?}: {message}")]
    HookTimeout {
        object: ObjectRef,
        timeout: Duration,
        message: String,
    },
    #[error("replacing {object}: the old object was not gone after {timeout:?}")]
    ReplaceTimeout {
        object: ObjectRef,
        timeout: Duration,
    },
    #[error("pruning {object}: {source}")]
    Prune {
        object: ObjectRef,
        #[source]
        source: Box<ClusterError>,
    },
}

impl ApplyFailure {
    /// The API server's answer this failure carries, if it came from the cluster.
    pub fn cluster_error(&self) -> Option<&ClusterError> {
        match self {
            ApplyFailure::Rejected { source, .. } | ApplyFailure::Prune { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

/// A failed apply: the failure, and everything that was changed before it (partial applies are real).
#[derive(Debug, thiserror::Error)]
#[error("{failure}")]
pub struct ApplyError {
    pub failure: ApplyFailure,
    pub changed: ChangeSet,
}

/// Applies `plan` to `cluster`.
pub async fn apply<C: ApplyTarget + Sync>(
    cluster: &C,
    plan: &Plan,
    options: &ApplyOptions,
) -> Result<ChangeSet, ApplyError> {
    let mut changed = ChangeSet::default();
    let slots = match plan
        .changes
        .iter()
        .map(|change| {
            order::slot(&change.desired).map_err(|source| ApplyFailure::Order {
                object: change.object.clone(),
                provenance: change.provenance.clone(),
                source,
            })
        })
        .collect::<Result<Vec<Slot>, _>>()
    {
        Ok(slots) => slots,
        Err(failure) => return Err(ApplyError { failure, changed }),
    };
    let steps = order::steps(&slots);

    let result = run_steps(cluster, plan, options, &steps, &mut changed).await;
    if let Err(failure) = result {
        run_sync_fail_hooks(cluster, plan, options, &steps, &mut changed).await;
        return Err(ApplyError { failure, changed });
    }
    if options.prune
        && let Err(failure) = prune(cluster, plan, options, &mut changed)
            .instrument(Stage::Prune.span())
            .await
    {
        return Err(ApplyError { failure, changed });
    }
    Ok(changed)
}

async fn run_steps<C: ApplyTarget + Sync>(
    cluster: &C,
    plan: &Plan,
    options: &ApplyOptions,
    steps: &[(Slot, Vec<usize>)],
    changed: &mut ChangeSet,
) -> Result<(), ApplyFailure> {
    for (slot, members) in steps {
        if slot.phase == Phase::SyncFail {
            continue;
        }
        run_step(cluster, plan, options, members, changed).await?;
        if matches!(slot.phase, Phase::PreSync | Phase::PostSync) {
            wait_for_hooks(cluster, plan, members).await?;
        }
    }
    Ok(())
}

async fn run_sync_fail_hooks<C: ApplyTarget + Sync>(
    cluster: &C,
    plan: &Plan,
    options: &ApplyOptions,
    steps: &[(Slot, Vec<usize>)],
    changed: &mut ChangeSet,
) {
    for (slot, members) in steps {
        if slot.phase != Phase::SyncFail {
            continue;
        }
        let result = match run_step(cluster, plan, options, members, changed).await {
            Ok(()) => wait_for_hooks(cluster, plan, members).await,
            Err(failure) => Err(failure),
        };
        if let Err(failure) = result {
            tracing::warn!(%failure, "SyncFail hook did not succeed");
        }
    }
}

/// Applies one step's objects in parallel; waits for CRDs among them to be Established.
async fn run_step<C: ApplyTarget + Sync>(
    cluster: &C,
    plan: &Plan,
    options: &ApplyOptions,
    members: &[usize],
    changed: &mut ChangeSet,
) -> Result<(), ApplyFailure> {
    let results: Vec<(usize, Result<Outcome, ApplyFailure>)> =
        stream::iter(members.iter().copied())
            .map(|index| async move {
                let change = &plan.changes[index];
                (index, apply_one(cluster, change, options).await)
            })
            .buffer_unordered(options.concurrency.max(1))
            .collect()
            .await;
    let mut first_failure = None;
    let mut ordered = results;
    ordered.sort_by_key(|(index, _)| *index);
    let mut established_needed = Vec::new();
    for (index, result) in ordered {
        let change = &plan.changes[index];
        match result {
            Ok(outcome) => {
                changed.record(&change.object, outcome);
                if change.object.kind == "CustomResourceDefinition" {
                    established_needed.push(change.object.clone());
                }
            }
            Err(failure) => {
                first_failure.get_or_insert(failure);
            }
        }
    }
    if let Some(failure) = first_failure {
        return Err(failure);
    }
    if !established_needed.is_empty() {
        for crd in &established_needed {
            wait_established(cluster, crd).await?;
        }
        cluster.forget_discovery();
    }
    Ok(())
}

async fn apply_one<C: ApplyTarget + Sync>(
    cluster: &C,
    change: &Change,
    options: &ApplyOptions,
) -> Result<Outcome, ApplyFailure> {
    match change.action {
        Action::Unchanged => return Ok(Outcome::Unchanged),
        Action::Replace => {
            replace(cluster, change, ownership_for(options)).await?;
            return Ok(Outcome::Replaced);
        }
        Action::Create | Action::Update => {}
    }
    let ownership = ownership_for(options);
    let rejected = |source: ClusterError| ApplyFailure::Rejected {
        object: change.object.clone(),
        provenance: change.provenance.clone(),
        source: Box::new(source),
    };
    match cluster.apply(&change.desired, ownership).await {
        Ok(_) => Ok(match change.action {
            Action::Create => Outcome::Created,
            _ => Outcome::Configured,
        }),
        Err(error) if error.is_immutable_field() => {
            let message = match error {
                ClusterError::Rejected { message, .. } => message,
                other => other.to_string(),
            };
            if !replace_allowed(&change.desired, options.replace) {
                return Err(ApplyFailure::Immutable {
                    object: change.object.clone(),
                    provenance: change.provenance.clone(),
                    message,
                });
            }
            replace(cluster, change, ownership).await?;
            Ok(Outcome::Replaced)
        }
        Err(source) => Err(rejected(source)),
    }
}

fn ownership_for(options: &ApplyOptions) -> Ownership {
    match options.conflicts {
        Conflicts::TakeOwnership => Ownership::Force,
        Conflicts::Fail => Ownership::Respect,
    }
}

/// Delete (foreground, so dependents go first), wait until gone, create.
async fn replace<C: ApplyTarget + Sync>(
    cluster: &C,
    change: &Change,
    ownership: Ownership,
) -> Result<(), ApplyFailure> {
    let rejected = |source: ClusterError| ApplyFailure::Rejected {
        object: change.object.clone(),
        provenance: change.provenance.clone(),
        source: Box::new(source),
    };
    cluster
        .delete(&change.object, PropagationPolicy::Foreground)
        .await
        .map_err(rejected)?;
    let deadline = tokio::time::Instant::now() + REPLACE_DELETE_TIMEOUT;
    while cluster
        .get(&change.object)
        .await
        .map_err(rejected)?
        .is_some()
    {
        if tokio::time::Instant::now() >= deadline {
            return Err(ApplyFailure::ReplaceTimeout {
                object: change.object.clone(),
                timeout: REPLACE_DELETE_TIMEOUT,
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster
        .apply(&change.desired, ownership)
        .await
        .map_err(rejected)?;
    Ok(())
}

/// Waits until every hook among `members` completed (Current for capstan-health: a Job Complete, a
/// Pod Succeeded), applying its delete policy.
async fn wait_for_hooks<C: ApplyTarget + Sync>(
    cluster: &C,
    plan: &Plan,
    members: &[usize],
) -> Result<(), ApplyFailure> {
    for &index in members {
        let change = &plan.changes[index];
        let policy = hooks::delete_policy(&change.desired);
        let deadline = tokio::time::Instant::now() + HOOK_TIMEOUT;
        loop {
            let health = match cluster.get(&change.object).await {
                Ok(Some(live)) => capstan_health::assess(&live),
                Ok(None) => capstan_health::Health::not_found(),
                Err(e) => capstan_health::Health::new(HealthStatus::Unknown, e.to_string()),
            };
            match health.status {
                HealthStatus::Current => {
                    if policy.on_success {
                        delete_hook(cluster, &change.object).await;
                    }
                    break;
                }
                HealthStatus::Failed => {
                    if policy.on_failure {
                        delete_hook(cluster, &change.object).await;
                    }
                    return Err(ApplyFailure::HookFailed {
                        object: change.object.clone(),
                        message: health.message,
                    });
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(ApplyFailure::HookTimeout {
                        object: change.object.clone(),
                        timeout: HOOK_TIMEOUT,
                        message: health.message,
                    });
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(())
}

async fn delete_hook<C: ApplyTarget + Sync>(cluster: &C, hook: &ObjectRef) {
    if let Err(error) = cluster.delete(hook, PropagationPolicy::Background).await {
        tracing::warn!(%hook, %error, "could not delete hook after it ran");
    }
}

async fn wait_established<C: ApplyTarget + Sync>(
    cluster: &C,
    crd: &ObjectRef,
) -> Result<(), ApplyFailure> {
    let deadline = tokio::time::Instant::now() + CRD_ESTABLISHED_TIMEOUT;
    let mut reason = String::from("not found");
    loop {
        match cluster.get(crd).await {
            Ok(Some(live)) => {
                let conditions = live
                    .data
                    .pointer("/status/conditions")
                    .and_then(|c| c.as_array())
                    .cloned()
                    .unwrap_or_default();
                let established = conditions.iter().any(|c| {
                    c.get("type").and_then(|t| t.as_str()) == Some("Established")
                        && c.get("status").and_then(|s| s.as_str()) == Some("True")
                });
                if established {
                    return Ok(());
                }
                reason = conditions
                    .iter()
                    .filter_map(|c| c.get("message").and_then(|m| m.as_str()))
                    .collect::<Vec<_>>()
                    .join("; ");
            }
            Ok(None) => {}
            Err(e) => reason = e.to_string(),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApplyFailure::CrdNotEstablished {
                object: crd.clone(),
                timeout: CRD_ESTABLISHED_TIMEOUT,
                reason,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes the plan's prune candidates marked Delete, in reverse apply order.
async fn prune<C: ApplyTarget + Sync>(
    cluster: &C,
    plan: &Plan,
    options: &ApplyOptions,
    changed: &mut ChangeSet,
) -> Result<(), ApplyFailure> {
    let mut doomed: Vec<&ObjectRef> = plan
        .prune
        .iter()
        .filter(|p| p.decision == PruneDecision::Delete)
        .map(|p| &p.object)
        .collect();
    doomed.sort_by_key(|object| std::cmp::Reverse(order::kind_rank(&object.kind)));
    for object in doomed {
        match cluster.delete(object, options.propagation.clone()).await {
            Ok(Deleted::Requested | Deleted::AlreadyGone) => {
                changed.record(object, Outcome::Pruned)
            }
            Err(source) => {
                return Err(ApplyFailure::Prune {
                    object: object.clone(),
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{Call, FakeTarget, Refusal};
    use capstan_plan::{PruneCandidate, hooks::HOOK_ANNOTATION};
    use serde_json::{Value, json};

    fn object(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Value {
        let mut object =
            json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
        if let Some(namespace) = namespace {
            object["metadata"]["namespace"] = json!(namespace);
        }
        object
    }

    fn annotated(mut object: Value, key: &str, value: &str) -> Value {
        object["metadata"]["annotations"] = json!({ key: value });
        object
    }

    fn namespace(name: &str) -> Value {
        object("v1", "Namespace", None, name)
    }

    fn config_map(name: &str) -> Value {
        object("v1", "ConfigMap", Some("shop"), name)
    }

    fn deployment(name: &str) -> Value {
        object("apps/v1", "Deployment", Some("shop"), name)
    }

    fn widget_crd() -> Value {
        let mut crd = object(
            "apiextensions.k8s.io/v1",
            "CustomResourceDefinition",
            None,
            "widgets.example.com",
        );
        crd["spec"] = json!({"group": "example.com", "names": {"kind": "Widget", "plural": "widgets"},
                             "scope": "Namespaced"});
        crd
    }

    fn widget(name: &str) -> Value {
        object("example.com/v1", "Widget", Some("shop"), name)
    }

    fn job(name: &str, phase: &str) -> Value {
        annotated(
            object("batch/v1", "Job", Some("shop"), name),
            HOOK_ANNOTATION,
            phase,
        )
    }

    fn reference(value: &Value) -> ObjectRef {
        let object: DynamicObject = serde_json::from_value(value.clone()).expect("object");
        ObjectRef::from_object(&object).expect("reference")
    }

    fn change(value: Value, action: Action) -> Change {
        let desired: DynamicObject = serde_json::from_value(value).expect("object");
        let object = ObjectRef::from_object(&desired).expect("reference");
        Change {
            provenance: format!("test#{}", object.name),
            object,
            action,
            diff: String::new(),
            drift: Vec::new(),
            ignored: Vec::new(),
            not_dry_run: None,
            hook: hooks::is_hook(&desired),
            desired,
            live_resource_version: None,
        }
    }

    fn plan(changes: Vec<Change>, prune: Vec<(Value, PruneDecision)>) -> Plan {
        Plan {
            app: "apps/shop".into(),
            changes,
            prune: prune
                .into_iter()
                .map(|(object, decision)| PruneCandidate {
                    object: reference(&object),
                    decision,
                    live_resource_version: None,
                })
                .collect(),
            hash: String::new(),
        }
    }

    fn applied(value: &Value) -> Call {
        Call::Apply(reference(value).to_string(), Ownership::Force)
    }

    fn deleted(value: &Value, propagation: PropagationPolicy) -> Call {
        Call::Delete(reference(value).to_string(), propagation)
    }

    fn entries(changes: &ChangeSet) -> Vec<(String, Outcome)> {
        changes
            .entries
            .iter()
            .map(|e| (e.object.to_string(), e.outcome))
            .collect()
    }

    #[tokio::test]
    async fn namespaces_and_crds_go_first_and_custom_resources_after_their_crd() {
        let fake = FakeTarget::default();
        // Render order: everything that needs the Namespace or the CRD comes before them.
        let plan = plan(
            vec![
                change(deployment("web"), Action::Create),
                change(widget("w"), Action::Create),
                change(config_map("settings"), Action::Create),
                change(config_map("same"), Action::Unchanged),
                change(widget_crd(), Action::Create),
                change(namespace("shop"), Action::Create),
            ],
            Vec::new(),
        );
        let changes = apply(&fake, &plan, &ApplyOptions::default())
            .await
            .expect("apply");
        assert_eq!(
            fake.calls(),
            vec![
                applied(&namespace("shop")),
                applied(&widget_crd()),
                Call::ForgetDiscovery,
                applied(&config_map("settings")),
                applied(&deployment("web")),
                applied(&widget("w")),
            ],
            "unchanged objects are not sent"
        );
        assert_eq!(changes.count(Outcome::Created), 5);
        assert_eq!(changes.count(Outcome::Unchanged), 1);
        assert_eq!(changes.written().count(), 5);
    }

    #[tokio::test]
    async fn conflicts_fail_applies_without_force() {
        let fake = FakeTarget::with_namespaces(&["shop"]);
        let plan = plan(vec![change(config_map("a"), Action::Update)], Vec::new());
        let options = ApplyOptions {
            conflicts: Conflicts::Fail,
            ..Default::default()
        };
        let changes = apply(&fake, &plan, &options).await.expect("apply");
        assert_eq!(
            fake.calls(),
            vec![Call::Apply(
                reference(&config_map("a")).to_string(),
                Ownership::Respect
            )]
        );
        assert_eq!(
            entries(&changes),
            vec![(reference(&config_map("a")).to_string(), Outcome::Configured)]
        );
    }

    #[tokio::test]
    async fn prune_deletes_only_delete_candidates_in_reverse_order() {
        let fake = FakeTarget::with_namespaces(&["old", "shop"]);
        let old_namespace = namespace("old");
        let old_config = object("v1", "ConfigMap", Some("old"), "settings");
        let old_deployment = object("apps/v1", "Deployment", Some("old"), "web");
        let foreign = object("v1", "Secret", Some("old"), "theirs");
        let kept = object("v1", "Service", Some("old"), "kept");
        let gone = object("v1", "ConfigMap", Some("old"), "gone");
        for live in [
            &old_namespace,
            &old_config,
            &old_deployment,
            &foreign,
            &kept,
        ] {
            fake.put(live.clone());
        }
        let prune = vec![
            (old_namespace.clone(), PruneDecision::Delete),
            (old_config.clone(), PruneDecision::Delete),
            (foreign.clone(), PruneDecision::NotOwned),
            (old_deployment.clone(), PruneDecision::Delete),
            (kept.clone(), PruneDecision::Disabled),
            (gone.clone(), PruneDecision::Gone),
        ];
        let changes_in = vec![change(config_map("new"), Action::Create)];

        // Without prune, nothing is deleted.
        let without = apply(
            &fake,
            &plan(changes_in.clone(), prune.clone()),
            &ApplyOptions::default(),
        )
        .await
        .expect("apply");
        assert_eq!(without.count(Outcome::Pruned), 0);
        assert!(
            !fake
                .calls()
                .iter()
                .any(|call| matches!(call, Call::Delete(..)))
        );

        let options = ApplyOptions {
            prune: true,
            propagation: PropagationPolicy::Foreground,
            ..Default::default()
        };
        let changes = apply(&fake, &plan(changes_in, prune), &options)
            .await
            .expect("apply with prune");
        let deletes: Vec<Call> = fake
            .calls()
            .into_iter()
            .filter(|call| matches!(call, Call::Delete(..)))
            .collect();
        assert_eq!(
            deletes,
            vec![
                deleted(&old_deployment, PropagationPolicy::Foreground),
                deleted(&old_config, PropagationPolicy::Foreground),
                deleted(&old_namespace, PropagationPolicy::Foreground),
            ]
        );
        let pruned: Vec<String> = changes
            .entries
            .iter()
            .filter(|e| e.outcome == Outcome::Pruned)
            .map(|e| e.object.to_string())
            .collect();
        assert_eq!(
            pruned,
            [&old_deployment, &old_config, &old_namespace]
                .map(|o| reference(o).to_string())
                .to_vec()
        );
        let stored = fake.stored();
        assert!(
            stored.contains(&reference(&foreign).to_string()),
            "{stored:?}"
        );
        assert!(stored.contains(&reference(&kept).to_string()), "{stored:?}");
    }

    #[tokio::test]
    async fn a_refused_object_stops_the_sync_and_returns_what_changed_before() {
        let fake = FakeTarget::default();
        fake.refuse(
            "bad",
            Refusal::Status {
                code: 403,
                reason: "Forbidden",
            },
        );
        let doomed = object("v1", "ConfigMap", Some("shop"), "doomed");
        fake.put(doomed.clone());
        let plan = plan(
            vec![
                change(namespace("shop"), Action::Create),
                change(config_map("good"), Action::Create),
                change(config_map("bad"), Action::Create),
                change(deployment("web"), Action::Create),
            ],
            vec![(doomed, PruneDecision::Delete)],
        );
        let options = ApplyOptions {
            prune: true,
            ..Default::default()
        };
        let err = apply(&fake, &plan, &options).await.expect_err("refused");
        match &err.failure {
            ApplyFailure::Rejected { object, .. } => assert_eq!(object.name, "bad"),
            other => panic!("not a rejection: {other}"),
        }
        assert!(
            err.failure
                .cluster_error()
                .is_some_and(ClusterError::is_forbidden)
        );
        assert!(err.to_string().contains("test#bad"), "{err}");
        assert_eq!(
            entries(&err.changed),
            vec![
                (reference(&namespace("shop")).to_string(), Outcome::Created),
                (reference(&config_map("good")).to_string(), Outcome::Created),
            ]
        );
        let calls = fake.calls();
        assert!(!calls.contains(&applied(&deployment("web"))), "{calls:?}");
        assert!(
            !calls.iter().any(|call| matches!(call, Call::Delete(..))),
            "nothing is pruned after a failure: {calls:?}"
        );
    }

    #[tokio::test]
    async fn an_immutable_change_is_refused_unless_the_object_opts_into_replace() {
        let fake = FakeTarget::with_namespaces(&["shop"]);
        fake.put(config_map("pinned"));
        fake.refuse("pinned", Refusal::Immutable);
        let err = apply(
            &fake,
            &plan(
                vec![change(config_map("pinned"), Action::Update)],
                Vec::new(),
            ),
            &ApplyOptions::default(),
        )
        .await
        .expect_err("immutable");
        assert!(
            matches!(&err.failure, ApplyFailure::Immutable { message, .. }
                if message.ends_with(capstan_core::api::FIELD_IMMUTABLE_MESSAGE)),
            "{err}"
        );
        assert!(err.to_string().contains("Replace=true"), "{err}");

        let opted_in = annotated(
            config_map("pinned"),
            SYNC_OPTIONS_ANNOTATION,
            "Replace=true",
        );
        let before = fake.calls().len();
        let changes = apply(
            &fake,
            &plan(vec![change(opted_in.clone(), Action::Update)], Vec::new()),
            &ApplyOptions::default(),
        )
        .await
        .expect("replace");
        assert_eq!(
            fake.calls()[before..],
            [
                applied(&opted_in),
                deleted(&opted_in, PropagationPolicy::Foreground),
                applied(&opted_in),
            ]
        );
        assert_eq!(changes.count(Outcome::Replaced), 1);
    }

    #[tokio::test]
    async fn hooks_run_around_the_sync_and_sync_fail_hooks_run_on_failure() {
        let fake = FakeTarget::with_namespaces(&["shop"]);
        let pre = job("migrate", "PreSync");
        let post = job("notify", "PostSync");
        let on_failure = job("page", "SyncFail");
        let changes = apply(
            &fake,
            &plan(
                vec![
                    change(post.clone(), Action::Create),
                    change(deployment("web"), Action::Create),
                    change(on_failure.clone(), Action::Create),
                    change(pre.clone(), Action::Create),
                ],
                Vec::new(),
            ),
            &ApplyOptions::default(),
        )
        .await
        .expect("apply");
        assert_eq!(
            fake.calls(),
            vec![applied(&pre), applied(&deployment("web")), applied(&post)],
            "SyncFail hooks only run when the sync failed"
        );
        assert_eq!(changes.count(Outcome::Created), 3);

        let fake = FakeTarget::with_namespaces(&["shop"]);
        fake.fail_job("migrate");
        let err = apply(
            &fake,
            &plan(
                vec![
                    change(deployment("web"), Action::Create),
                    change(on_failure.clone(), Action::Create),
                    change(pre.clone(), Action::Create),
                ],
                Vec::new(),
            ),
            &ApplyOptions::default(),
        )
        .await
        .expect_err("hook failed");
        assert!(
            matches!(&err.failure, ApplyFailure::HookFailed { object, .. } if object.name == "migrate"),
            "{err}"
        );
        assert_eq!(fake.calls(), vec![applied(&pre), applied(&on_failure)]);
    }
}
