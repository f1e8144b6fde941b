//! The plan stage: for each desired object, what a sync would do to the cluster, and why.
//!
//! For every object the server answers a server-side apply dry-run (field manager `capstan`, forced:
//! Git wins); the answer is compared with the live object after [`normalize::comparable`]. The result
//! is create / update (with a diff and the foreign managers of drifted fields) / unchanged, plus the
//! prune candidates: objects in the previous inventory that are no longer desired, split into those
//! that carry this app's ownership mark and those that must be left alone.
//!
//! With `ignoreDifferences` ([`PlanOptions::ignore_differences`], see [`ignore`]), fields of existing
//! objects are left out: from both sides of the comparison (a difference there does not make an
//! update, a diff or drift) and from the object that is dry-run and applied (so a sync never takes
//! them back). [`Change::ignored`] lists the ignored fields that were present.
//!
//! An existing object that the live object already proves unchanged ([`unchanged::proven`]) is not
//! dry-run at all, unless [`PlanOptions::dry_run_all`]: a synced app is planned from its LISTs.
//!
//! The plan itself does no I/O: it asks a [`ServerView`] (implemented for `capstan_cluster::Cluster`
//! in that crate's adapter module, and by in-memory fakes in tests), so the same inputs and the same server answers always give the same plan and the same hash.

pub mod diff;
pub mod drift;
#[cfg(test)]
mod fake;
pub mod hooks;
pub mod ignore;
pub mod mask;
pub mod normalize;
pub mod unchanged;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;

use capstan_core::annotation;
use capstan_core::api::{ClusterError, FIELD_MANAGER};
use capstan_core::names::{self, NameError};
use capstan_core::ownership::{self, AppId};
use capstan_core::{ObjectError, ObjectRef};
use capstan_inventory::Inventory;
use futures::{StreamExt, stream};
use kube::api::DynamicObject;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use drift::FieldDrift;
pub use ignore::{IgnoreDifference, IgnoreRuleError};

/// How [`NotDryRun::ProvenUnchanged`] reads: the live object, by [`unchanged::proven`], showed the
/// object needs no dry-run.
pub const PROVEN_UNCHANGED: &str = "the live object proves it unchanged";

/// Why the server did not dry-run an object (see [`Change::not_dry_run`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotDryRun {
    /// A hook: deleted and created again on every sync.
    Hook,
    /// Its kind comes from a CustomResourceDefinition this sync creates.
    CrdCreatedBySync,
    /// Its Namespace is created by this sync.
    NamespaceCreatedBySync,
    /// An immutable field changes and the object opts into Replace.
    ImmutableReplace,
    /// The live object proves it unchanged.
    ProvenUnchanged,
}

impl NotDryRun {
    /// What the plan prints (and its JSON carries).
    pub fn as_str(self) -> &'static str {
        match self {
            NotDryRun::Hook => "hook: runs again on every sync",
            NotDryRun::CrdCreatedBySync => "its CustomResourceDefinition is created by this sync",
            NotDryRun::NamespaceCreatedBySync => "its Namespace is created by this sync",
            NotDryRun::ImmutableReplace => "an immutable field changes: delete, then create",
            NotDryRun::ProvenUnchanged => PROVEN_UNCHANGED,
        }
    }
}

impl std::fmt::Display for NotDryRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl Serialize for NotDryRun {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Annotation that keeps one object out of prune.
pub const PRUNE_ANNOTATION: &str = "capstan.dev/prune";
/// Dry-runs in flight at once; the client's own rate limits still apply.
const CONCURRENCY: usize = 32;

/// One object to sync, with where it came from (file and document) for messages.
#[derive(Clone, Debug)]
pub struct DesiredObject {
    pub object: DynamicObject,
    pub provenance: String,
}

/// What the plan needs from the cluster. `capstan_cluster::Cluster` implements it (in
/// `capstan-cluster`, which depends on this crate, not the other way round); the plan never talks to
/// the API server itself.
pub trait ServerView {
    /// `Some(true)` namespaced, `Some(false)` cluster-scoped, `None` when the server does not know the
    /// kind (yet).
    fn namespaced(
        &self,
        object: &ObjectRef,
    ) -> impl Future<Output = Result<Option<bool>, ClusterError>> + Send;
    fn dry_run_apply(
        &self,
        desired: &DynamicObject,
    ) -> impl Future<Output = Result<DynamicObject, ClusterError>> + Send;
    fn live(
        &self,
        object: &ObjectRef,
    ) -> impl Future<Output = Result<Option<DynamicObject>, ClusterError>> + Send;
    /// Every live object of `kind` (its name is ignored) in `namespace` (`None`: cluster-scoped), or
    /// `None` when there are more than `limit` of them.
    fn list(
        &self,
        kind: &ObjectRef,
        namespace: Option<&str>,
        limit: u32,
    ) -> impl Future<Output = Result<Option<Vec<DynamicObject>>, ClusterError>> + Send;
}

/// Kinds with at least this many desired objects in one namespace are read with one LIST instead of a
/// GET per object.
const LIST_THRESHOLD: usize = 8;

/// (group, kind, namespace): the objects one LIST returns.
type KindInNamespace = (String, String, Option<String>);
/// Live objects read ahead by LIST, keyed by (group, kind, namespace, name).
type Prefetched = HashMap<(String, String, Option<String>, String), DynamicObject>;

/// How many live objects a prefetching LIST may return per desired object. In a namespace shared by
/// many apps (or full of foreign objects) a LIST would read far more than the app needs, in time and
/// memory; then the objects are read one GET at a time instead.
const LIST_BUDGET_FACTOR: usize = 4;
const LIST_BUDGET_MIN: usize = 500;

/// LISTs each (kind, namespace) that many desired objects share. Objects not found there do not exist
/// (as of that LIST; the dry-run's resourceVersion check below catches anything newer). A kind
/// with more live objects than the budget is not listed.
async fn prefetch<V: ServerView>(
    view: &V,
    prepared: &[(DynamicObject, ObjectRef, String)],
) -> Result<(Prefetched, HashSet<KindInNamespace>), PlanError> {
    let mut groups: HashMap<KindInNamespace, (usize, &ObjectRef, &str)> = HashMap::new();
    for (_, reference, provenance) in prepared {
        let key = (
            reference.group.clone(),
            reference.kind.clone(),
            reference.namespace.clone(),
        );
        groups.entry(key).or_insert((0, reference, provenance)).0 += 1;
    }
    let mut live = Prefetched::new();
    let mut listed = HashSet::new();
    for (key, (count, reference, provenance)) in groups {
        if count < LIST_THRESHOLD || view.namespaced(reference).await.ok().flatten().is_none() {
            continue;
        }
        let budget = (count * LIST_BUDGET_FACTOR).max(LIST_BUDGET_MIN);
        let Some(items) = view
            .list(
                reference,
                reference.namespace.as_deref(),
                u32::try_from(budget).unwrap_or(u32::MAX),
            )
            .await
            .map_err(|e| server_error(provenance, e))?
        else {
            continue;
        };
        for item in items {
            if let Some(name) = item.metadata.name.clone() {
                live.insert((key.0.clone(), key.1.clone(), key.2.clone(), name), item);
            }
        }
        listed.insert(key);
    }
    Ok((live, listed))
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{provenance}: {source}")]
    Invalid {
        provenance: String,
        #[source]
        source: ObjectError,
    },
    /// A name, namespace or apiVersion the API server would refuse, or that cannot be one URL path
    /// segment: refused before any request carries it.
    #[error("{provenance}: {kind} {field}: {source}")]
    InvalidName {
        provenance: String,
        kind: String,
        /// `metadata.name`, `metadata.namespace` or `apiVersion`.
        field: &'static str,
        #[source]
        source: NameError,
    },
    #[error("destination namespace: {source}")]
    InvalidDestination {
        #[source]
        source: NameError,
    },
    #[error(
        "{provenance}: {object}: the cluster does not serve {api_version} {kind} and no \
         CustomResourceDefinition for it is part of this sync"
    )]
    UnknownKind {
        provenance: String,
        object: String,
        api_version: String,
        kind: String,
    },
    #[error("{provenance}: {source}")]
    Hook {
        provenance: String,
        #[source]
        source: hooks::HookError,
    },
    #[error("{provenance}: {object} is declared twice (also in {first})")]
    Duplicate {
        provenance: String,
        object: String,
        first: String,
    },
    #[error(transparent)]
    IgnoreRule(#[from] IgnoreRuleError),
    #[error(
        "{provenance}: {object}: ignoreDifferences left an object that is not valid: {message}"
    )]
    Ignore {
        provenance: String,
        object: String,
        message: String,
    },
    #[error("{provenance}: {source}")]
    Server {
        provenance: String,
        #[source]
        source: Box<ClusterError>,
    },
}

impl PlanError {
    /// The API server's answer this error carries, if it came from the cluster (for classifying it by
    /// status: see [`ClusterError::is_forbidden`] and friends).
    pub fn cluster_error(&self) -> Option<&ClusterError> {
        match self {
            PlanError::Server { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    /// An immutable field changes and the object opts into Replace: delete, then create.
    Replace,
    Unchanged,
}

/// Annotation with comma-separated sync options; `Replace=true` lets immutable-field changes delete and
/// re-create the object.
pub const SYNC_OPTIONS_ANNOTATION: &str = "capstan.dev/sync-options";

/// App-level choices that change what the plan proposes.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Replace on immutable-field changes for every object, as if each had `Replace=true`.
    pub replace: bool,
    /// Fields of existing objects that are neither compared nor applied (see [`ignore`]).
    pub ignore_differences: Vec<IgnoreDifference>,
    /// Dry-run every object, also those the live object already proves unchanged (see
    /// [`unchanged`]); for checking that proof, and for admission that must see every object.
    pub dry_run_all: bool,
}

/// Whether `object` (or the app, with `app_wide`) allows delete + create for immutable-field changes.
pub fn replace_allowed(object: &DynamicObject, app_wide: bool) -> bool {
    app_wide
        || annotation(object, SYNC_OPTIONS_ANNOTATION).is_some_and(|options| {
            options
                .split(',')
                .any(|option| option.trim().eq_ignore_ascii_case("Replace=true"))
        })
}

/// The plan for one desired object.
#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub object: ObjectRef,
    pub provenance: String,
    pub action: Action,
    /// Unified YAML diff, Secret values masked; empty for unchanged objects.
    pub diff: String,
    /// Fields Git takes back from other managers.
    pub drift: Vec<FieldDrift>,
    /// JSON pointers of the fields `ignoreDifferences` left out of the comparison and the applied
    /// object, among those the live object or the dry-run result has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
    /// Why the server did not dry-run this object, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_dry_run: Option<NotDryRun>,
    /// A hook: an action run on every sync, not state; it does not make a plan "changed".
    pub hook: bool,
    /// What apply sends: the desired object with namespace defaulted and the ownership mark set.
    #[serde(skip)]
    pub desired: DynamicObject,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_resource_version: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PruneDecision {
    /// In the previous inventory, carries this app's mark: deleted by a sync with prune.
    Delete,
    /// In the previous inventory but the live object does not carry this app's mark: never touched.
    NotOwned,
    /// Annotated `capstan.dev/prune: disabled`.
    Disabled,
    /// Already gone; only dropped from the inventory.
    Gone,
}

#[derive(Clone, Debug, Serialize)]
pub struct PruneCandidate {
    pub object: ObjectRef,
    pub decision: PruneDecision,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_resource_version: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub app: String,
    pub changes: Vec<Change>,
    pub prune: Vec<PruneCandidate>,
    /// sha256 over the desired objects and the live resourceVersions the plan was made against.
    pub hash: String,
}

impl Plan {
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    pub fn prunes(&self) -> impl Iterator<Item = &PruneCandidate> {
        self.prune
            .iter()
            .filter(|p| p.decision == PruneDecision::Delete)
    }

    /// Whether a sync (with prune when `prune`) would change the cluster's state. Hooks run on every
    /// sync and do not count.
    pub fn has_changes(&self, prune: bool) -> bool {
        self.changes
            .iter()
            .any(|c| c.action != Action::Unchanged && !c.hook)
            || (prune && self.prunes().next().is_some())
    }

    /// The objects this plan applies, as an inventory.
    pub fn desired_inventory(&self) -> Inventory {
        self.changes.iter().map(|c| c.object.clone()).collect()
    }
}

/// Plans `desired` for `app` into `namespace` against `view`, with `previous` as the last inventory.
pub async fn plan<V: ServerView + Sync>(
    view: &V,
    app: &AppId,
    namespace: &str,
    desired: Vec<DesiredObject>,
    previous: &Inventory,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    let rules = ignore::IgnoreRules::new(&options.ignore_differences, FIELD_MANAGER)?;
    // Names, namespaces and API versions go into request URLs: every one is checked before the
    // first request (explicit namespaces once the kind's scope is known, in `prepare`).
    names::namespace(namespace).map_err(|source| PlanError::InvalidDestination { source })?;
    for item in &desired {
        if !matches!(hooks::phase(&item.object), Ok(hooks::Phase::Skip)) {
            check_identity(&item.object, &item.provenance)?;
        }
    }
    let crds_in_set = custom_kinds_defined(&desired);
    let mut prepared = Vec::with_capacity(desired.len());
    let mut seen: HashMap<ObjectRef, String> = HashMap::new();
    for item in desired {
        match hooks::phase(&item.object) {
            Ok(hooks::Phase::Skip) => continue,
            Ok(_) => {}
            Err(source) => {
                return Err(PlanError::Hook {
                    provenance: item.provenance,
                    source,
                });
            }
        }
        let (object, reference) = prepare(
            view,
            app,
            namespace,
            item.object,
            &crds_in_set,
            &item.provenance,
        )
        .await?;
        if let Some(first) = seen.get(&reference) {
            return Err(PlanError::Duplicate {
                provenance: item.provenance,
                object: reference.to_string(),
                first: first.clone(),
            });
        }
        seen.insert(reference.clone(), item.provenance.clone());
        prepared.push((object, reference, item.provenance));
    }

    // Namespaces this sync creates: objects in them cannot be dry-run before they exist.
    let mut new_namespaces = HashSet::new();
    for (_, reference, provenance) in &prepared {
        if reference.group.is_empty() && reference.kind == "Namespace" {
            let exists = view
                .live(reference)
                .await
                .map_err(|e| server_error(provenance, e))?
                .is_some();
            if !exists {
                new_namespaces.insert(reference.name.clone());
            }
        }
    }
    let (prefetched, listed) = prefetch(view, &prepared).await?;
    let (crds_in_set, new_namespaces) = (&crds_in_set, &new_namespaces);
    let (prefetched, listed, rules) = (&prefetched, &listed, &rules);
    let plan_one = |(object, reference, provenance): (DynamicObject, ObjectRef, String)| async move {
        let in_new_namespace = reference
            .namespace
            .as_ref()
            .is_some_and(|ns| new_namespaces.contains(ns));
        let kind_from_new_crd = crds_in_set
            .contains_key(&(reference.group.clone(), reference.kind.clone()))
            && view
                .namespaced(&reference)
                .await
                .map_err(|e| server_error(&provenance, e))?
                .is_none();
        let hook = hooks::is_hook(&object);
        let not_dry_run = if hook {
            Some(NotDryRun::Hook)
        } else if kind_from_new_crd {
            Some(NotDryRun::CrdCreatedBySync)
        } else if in_new_namespace {
            Some(NotDryRun::NamespaceCreatedBySync)
        } else {
            None
        };
        if let Some(reason) = not_dry_run {
            // Hooks are deleted and created again; the others cannot exist yet.
            let live = if hook {
                view.live(&reference)
                    .await
                    .map_err(|e| server_error(&provenance, e))?
            } else {
                None
            };
            return Ok(Change {
                diff: diff::unified(
                    None,
                    Some(&shown(&object_value(&object), None)),
                    &reference.to_string(),
                ),
                object: reference,
                provenance,
                action: if live.is_some() {
                    Action::Replace
                } else {
                    Action::Create
                },
                drift: Vec::new(),
                ignored: Vec::new(),
                not_dry_run: Some(reason),
                hook,
                desired: object,
                live_resource_version: live.and_then(|l| l.metadata.resource_version),
            });
        }
        // Controllers write too (a Deployment gets its revision annotation right after a
        // change): compare only a live object and a dry-run made from the same resourceVersion.
        let group_key = (
            reference.group.clone(),
            reference.kind.clone(),
            reference.namespace.clone(),
        );
        let ignored = rules.for_object(&reference);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let live = if attempts == 1 && listed.contains(&group_key) {
                prefetched
                    .get(&(
                        group_key.0.clone(),
                        group_key.1.clone(),
                        group_key.2.clone(),
                        reference.name.clone(),
                    ))
                    .cloned()
            } else {
                view.live(&reference)
                    .await
                    .map_err(|e| server_error(&provenance, e))?
            };
            // Most objects of a synced app are unchanged; when the live object proves it, the
            // server is not asked.
            if let Some(live) = live
                .as_ref()
                .filter(|_| attempts == 1 && ignored.is_empty() && !options.dry_run_all)
                && unchanged::proven(&object_value(&object), &object_value(live), FIELD_MANAGER)
            {
                return Ok(Change {
                    object: reference,
                    provenance,
                    action: Action::Unchanged,
                    diff: String::new(),
                    drift: Vec::new(),
                    ignored: Vec::new(),
                    not_dry_run: Some(NotDryRun::ProvenUnchanged),
                    hook: false,
                    desired: object,
                    live_resource_version: live.metadata.resource_version.clone(),
                });
            }
            // What a sync sends to an existing object: Git's object less the ignored fields.
            let applied = match &live {
                Some(live) if !ignored.is_empty() => Some(applied_object(
                    app,
                    &object,
                    live,
                    &ignored,
                    &reference,
                    &provenance,
                )?),
                _ => None,
            };
            let predicted = match view
                .dry_run_apply(applied.as_ref().unwrap_or(&object))
                .await
            {
                Ok(predicted) => predicted,
                Err(error)
                    if error.is_immutable_field()
                        && live.is_some()
                        && replace_allowed(&object, options.replace) =>
                {
                    return Ok(replacement(reference, provenance, object, live.as_ref()));
                }
                Err(e) => return Err(server_error(&provenance, e)),
            };
            // A dry-run create stores nothing, so it carries no resourceVersion; a dry-run of an
            // existing object carries the one it was computed from.
            let consistent = match &live {
                Some(live) => live.metadata.resource_version == predicted.metadata.resource_version,
                None => predicted
                    .metadata
                    .resource_version
                    .as_deref()
                    .is_none_or(str::is_empty),
            };
            if consistent || attempts >= 5 {
                return Ok(compare(
                    reference,
                    provenance,
                    applied.unwrap_or(object),
                    live.as_ref(),
                    &predicted,
                    &ignored,
                ));
            }
        }
    };
    // Unordered, so that one slow answer does not hold back the others; sorted back afterwards.
    let mut planned: Vec<(usize, Result<Change, PlanError>)> =
        stream::iter(prepared.into_iter().enumerate())
            .map(|(index, item)| {
                let change = plan_one(item);
                async move { (index, change.await) }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    planned.sort_by_key(|(index, _)| *index);
    let changes: Vec<Change> = planned
        .into_iter()
        .map(|(_, change)| change)
        .collect::<Result<_, _>>()?;

    let desired_inventory: Inventory = changes.iter().map(|c| c.object.clone()).collect();
    let mut prune = Vec::new();
    for candidate in previous.missing_from(&desired_inventory) {
        let provenance = format!("inventory of {app}");
        let live = match view
            .namespaced(&candidate)
            .await
            .map_err(|e| server_error(&provenance, e))?
        {
            // The kind is gone (its CRD was removed): nothing left to delete.
            None => None,
            Some(_) => view
                .live(&candidate)
                .await
                .map_err(|e| server_error(&provenance, e))?,
        };
        let decision = match &live {
            None => PruneDecision::Gone,
            Some(live) if !ownership::is_owned_by(live, app) => PruneDecision::NotOwned,
            Some(live) if annotation(live, PRUNE_ANNOTATION) == Some("disabled") => {
                PruneDecision::Disabled
            }
            Some(_) => PruneDecision::Delete,
        };
        prune.push(PruneCandidate {
            live_resource_version: live.and_then(|l| l.metadata.resource_version),
            object: candidate,
            decision,
        });
    }

    let hash = plan_hash(&changes, &prune);
    Ok(Plan {
        app: app.to_string(),
        changes,
        prune,
        hash,
    })
}

fn server_error(provenance: &str, source: ClusterError) -> PlanError {
    PlanError::Server {
        provenance: provenance.to_string(),
        source: Box::new(source),
    }
}

/// (group, kind) → namespaced, for every CustomResourceDefinition in the desired set.
fn custom_kinds_defined(desired: &[DesiredObject]) -> HashMap<(String, String), bool> {
    desired
        .iter()
        .filter(|d| {
            d.object.types.as_ref().is_some_and(|t| {
                t.kind == "CustomResourceDefinition"
                    && t.api_version.starts_with("apiextensions.k8s.io/")
            })
        })
        .filter_map(|d| {
            let spec = d.object.data.get("spec")?;
            let group = spec.get("group")?.as_str()?.to_string();
            let kind = spec.pointer("/names/kind")?.as_str()?.to_string();
            let namespaced = spec.get("scope").and_then(Value::as_str) != Some("Cluster");
            Some(((group, kind), namespaced))
        })
        .collect()
}

/// Refuses an object whose apiVersion or `metadata.name` the API server would refuse (by the rule of
/// its kind, see [`names::name_rule`]; a CustomResourceDefinition must also be named
/// `<spec.names.plural>.<spec.group>`), or that cannot be one URL path segment. Sends nothing.
fn check_identity(object: &DynamicObject, provenance: &str) -> Result<(), PlanError> {
    let reference = ObjectRef::from_object(object).map_err(|source| PlanError::Invalid {
        provenance: provenance.to_string(),
        source,
    })?;
    let invalid = |field: &'static str| {
        let kind = reference.kind.clone();
        move |source| PlanError::InvalidName {
            provenance: provenance.to_string(),
            kind,
            field,
            source,
        }
    };
    names::api_version(&reference.api_version()).map_err(invalid("apiVersion"))?;
    names::object_name(&reference.group, &reference.kind, &reference.name)
        .map_err(invalid("metadata.name"))?;
    if reference.group == "apiextensions.k8s.io" && reference.kind == "CustomResourceDefinition" {
        let spec = object.data.get("spec");
        let text = |pointer: &str| {
            spec.and_then(|s| s.pointer(pointer))
                .and_then(Value::as_str)
        };
        if let (Some(plural), Some(group)) = (text("/names/plural"), text("/group")) {
            names::crd_name(&reference.name, plural, group).map_err(invalid("metadata.name"))?;
        }
    }
    Ok(())
}

/// Defaults the namespace of namespaced objects (an empty one too, as kubectl does) and checks it,
/// refuses a namespace on cluster-scoped ones, and sets the ownership mark.
async fn prepare<V: ServerView>(
    view: &V,
    app: &AppId,
    namespace: &str,
    mut object: DynamicObject,
    crds_in_set: &HashMap<(String, String), bool>,
    provenance: &str,
) -> Result<(DynamicObject, ObjectRef), PlanError> {
    let reference = ObjectRef::from_object(&object).map_err(|source| PlanError::Invalid {
        provenance: provenance.to_string(),
        source,
    })?;
    let namespaced = match view
        .namespaced(&reference)
        .await
        .map_err(|e| server_error(provenance, e))?
    {
        Some(namespaced) => namespaced,
        None => *crds_in_set
            .get(&(reference.group.clone(), reference.kind.clone()))
            .ok_or_else(|| PlanError::UnknownKind {
                provenance: provenance.to_string(),
                object: reference.to_string(),
                api_version: reference.api_version(),
                kind: reference.kind.clone(),
            })?,
    };
    if namespaced {
        let explicit = object.metadata.namespace.take().filter(|ns| !ns.is_empty());
        if let Some(explicit) = &explicit {
            names::namespace(explicit).map_err(|source| PlanError::InvalidName {
                provenance: provenance.to_string(),
                kind: reference.kind.clone(),
                field: "metadata.namespace",
                source,
            })?;
        }
        object.metadata.namespace = Some(explicit.unwrap_or_else(|| namespace.to_string()));
    } else {
        // A namespace on a cluster-scoped object is ignored by the server; drop it so the inventory
        // and messages name the object the way the server does.
        object.metadata.namespace = None;
    }
    ownership::mark(&mut object, app);
    let reference = ObjectRef::from_object(&object).map_err(|source| PlanError::Invalid {
        provenance: provenance.to_string(),
        source,
    })?;
    Ok((object, reference))
}

fn object_value(object: &DynamicObject) -> Value {
    // A DynamicObject always serialises to JSON (string keys, no non-finite floats from YAML/JSON).
    serde_json::to_value(object).unwrap_or(Value::Null)
}

/// The comparable form of `value`, with Secret data masked against `other` when it is a Secret.
fn shown(value: &Value, other: Option<&Value>) -> Value {
    let mut value = normalize::comparable(value);
    if mask::is_secret(&value) {
        let mut other = other.map(normalize::comparable);
        mask::mask_secret_pair(other.as_mut(), Some(&mut value));
    }
    value
}

/// `desired` with `ignored` applied against `live` (see [`ignore::Ignored::applied`]), marked again.
fn applied_object(
    app: &AppId,
    desired: &DynamicObject,
    live: &DynamicObject,
    ignored: &ignore::Ignored,
    reference: &ObjectRef,
    provenance: &str,
) -> Result<DynamicObject, PlanError> {
    let value = ignored.applied(&object_value(desired), &object_value(live), FIELD_MANAGER);
    let mut applied: DynamicObject =
        serde_json::from_value(value).map_err(|e| PlanError::Ignore {
            provenance: provenance.to_string(),
            object: reference.to_string(),
            message: e.to_string(),
        })?;
    ownership::mark(&mut applied, app);
    Ok(applied)
}

fn compare(
    reference: ObjectRef,
    provenance: String,
    desired: DynamicObject,
    live: Option<&DynamicObject>,
    predicted: &DynamicObject,
    ignored: &ignore::Ignored,
) -> Change {
    let predicted_value = object_value(predicted);
    let label = reference.to_string();
    let Some(live) = live else {
        return Change {
            diff: diff::unified(None, Some(&shown(&predicted_value, None)), &label),
            object: reference,
            provenance,
            action: Action::Create,
            drift: Vec::new(),
            ignored: Vec::new(),
            not_dry_run: None,
            hook: false,
            desired,
            live_resource_version: None,
        };
    };
    let mut live_value = object_value(live);
    let mut predicted_value = predicted_value;
    let mut ignored_fields = Vec::new();
    if !ignored.is_empty() {
        let (live_kept, in_live) = ignored.strip(&live_value, &live_value);
        let (predicted_kept, in_predicted) = ignored.strip(&live_value, &predicted_value);
        let present: BTreeSet<ignore::Pointer> = in_live.into_iter().chain(in_predicted).collect();
        ignored_fields = present.iter().map(ToString::to_string).collect();
        (live_value, predicted_value) = (live_kept, predicted_kept);
    }
    let (live_comparable, predicted_comparable) = (
        normalize::comparable(&live_value),
        normalize::comparable(&predicted_value),
    );
    let action = if live_comparable == predicted_comparable {
        Action::Unchanged
    } else {
        Action::Update
    };
    let (diff, drift) = if action == Action::Update {
        let mut before = live_comparable.clone();
        let mut after = predicted_comparable.clone();
        if mask::is_secret(&after) {
            mask::mask_secret_pair(Some(&mut before), Some(&mut after));
        }
        (
            diff::unified(Some(&before), Some(&after), &label),
            drift::drift(&live_value, &predicted_value, FIELD_MANAGER),
        )
    } else {
        (String::new(), Vec::new())
    };
    Change {
        object: reference,
        provenance,
        action,
        diff,
        drift,
        ignored: ignored_fields,
        not_dry_run: None,
        hook: false,
        desired,
        live_resource_version: live.metadata.resource_version.clone(),
    }
}

/// The server cannot dry-run a change of an immutable field; show Git's object against the live one.
fn replacement(
    reference: ObjectRef,
    provenance: String,
    desired: DynamicObject,
    live: Option<&DynamicObject>,
) -> Change {
    let live_value = live.map(object_value);
    let desired_value = object_value(&desired);
    let before = live_value.as_ref().map(|l| shown(l, Some(&desired_value)));
    let after = shown(&desired_value, live_value.as_ref());
    Change {
        diff: diff::unified(before.as_ref(), Some(&after), &reference.to_string()),
        object: reference,
        provenance,
        action: Action::Replace,
        drift: Vec::new(),
        ignored: Vec::new(),
        not_dry_run: Some(NotDryRun::ImmutableReplace),
        hook: false,
        desired,
        live_resource_version: live.and_then(|l| l.metadata.resource_version.clone()),
    }
}

/// Hash over what was desired and what it was compared against: a plan file stays valid only while
/// both are unchanged.
fn plan_hash(changes: &[Change], prune: &[PruneCandidate]) -> String {
    let mut hasher = Sha256::new();
    for change in changes {
        let desired = normalize::canonical(object_value(&change.desired));
        hasher.update(desired.to_string().as_bytes());
        hasher.update(b"\0");
        hasher.update(
            change
                .live_resource_version
                .as_deref()
                .unwrap_or("-")
                .as_bytes(),
        );
        // What was ignored can change the action without changing the applied object.
        for pointer in &change.ignored {
            hasher.update(b"\0ignored ");
            hasher.update(pointer.as_bytes());
        }
        hasher.update(b"\n");
    }
    let mut pruned: BTreeMap<String, &str> = BTreeMap::new();
    for candidate in prune {
        pruned.insert(
            format!("{:?} {}", candidate.decision, candidate.object),
            candidate.live_resource_version.as_deref().unwrap_or("-"),
        );
    }
    for (object, resource_version) in pruned {
        hasher.update(format!("prune {object} {resource_version}\n").as_bytes());
    }
    format!("{:x}", hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeServer;
    use serde_json::json;

    fn app() -> AppId {
        AppId::new("apps", "shop")
    }

    fn config_map(namespace: &str, name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": namespace}, "data": {"k": "v"}})
    }

    fn marked(mut object: Value, app: &AppId) -> Value {
        let mut typed: DynamicObject = serde_json::from_value(object.clone()).expect("object");
        ownership::mark(&mut typed, app);
        object["metadata"] = serde_json::to_value(&typed.metadata).expect("metadata");
        object
    }

    fn reference(object: &Value) -> ObjectRef {
        let typed: DynamicObject = serde_json::from_value(object.clone()).expect("object");
        ObjectRef::from_object(&typed).expect("reference")
    }

    fn desired(objects: &[Value]) -> Vec<DesiredObject> {
        objects
            .iter()
            .enumerate()
            .map(|(index, object)| DesiredObject {
                object: serde_json::from_value(object.clone()).expect("object"),
                provenance: format!("app.yaml#{index}"),
            })
            .collect()
    }

    async fn plan_with(
        server: &FakeServer,
        objects: &[Value],
        previous: &Inventory,
        options: &PlanOptions,
    ) -> Result<Plan, PlanError> {
        plan(server, &app(), "shop", desired(objects), previous, options).await
    }

    fn decisions(plan: &Plan) -> Vec<(String, PruneDecision)> {
        plan.prune
            .iter()
            .map(|p| (p.object.name.clone(), p.decision))
            .collect()
    }

    #[tokio::test]
    async fn prune_never_deletes_what_the_app_does_not_own() {
        let server = FakeServer::default();
        let app = app();
        let owned = marked(config_map("shop", "owned"), &app);
        let other_app = marked(config_map("shop", "other-app"), &AppId::new("apps", "cart"));
        let same_name_elsewhere = marked(
            config_map("shop", "same-name-elsewhere"),
            &AppId::new("staging", "shop"),
        );
        let unmarked = config_map("shop", "unmarked");
        let mut label_only = config_map("shop", "label-only");
        label_only["metadata"]["labels"] = json!({ownership::APP_LABEL: app.label_value()});
        let mut disabled = marked(config_map("shop", "disabled"), &app);
        disabled["metadata"]["annotations"][PRUNE_ANNOTATION] = json!("disabled");
        let gone = config_map("shop", "gone");
        let removed_kind = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                                  "metadata": {"name": "removed-kind", "namespace": "shop"}});
        let kept = marked(config_map("shop", "kept"), &app);
        for live in [
            &owned,
            &other_app,
            &same_name_elsewhere,
            &unmarked,
            &label_only,
            &disabled,
            &kept,
        ] {
            server.put(live.clone());
        }
        let previous: Inventory = [
            &owned,
            &other_app,
            &same_name_elsewhere,
            &unmarked,
            &label_only,
            &disabled,
            &gone,
            &removed_kind,
            &kept,
        ]
        .into_iter()
        .map(reference)
        .collect();

        let plan = plan_with(
            &server,
            &[config_map("shop", "kept")],
            &previous,
            &PlanOptions::default(),
        )
        .await
        .expect("plan");
        let mut decisions = decisions(&plan);
        decisions.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            decisions,
            vec![
                ("disabled".to_string(), PruneDecision::Disabled),
                ("gone".to_string(), PruneDecision::Gone),
                ("label-only".to_string(), PruneDecision::NotOwned),
                ("other-app".to_string(), PruneDecision::NotOwned),
                ("owned".to_string(), PruneDecision::Delete),
                ("removed-kind".to_string(), PruneDecision::Gone),
                ("same-name-elsewhere".to_string(), PruneDecision::NotOwned),
                ("unmarked".to_string(), PruneDecision::NotOwned),
            ]
        );
        let prunes: Vec<&str> = plan.prunes().map(|p| p.object.name.as_str()).collect();
        assert_eq!(prunes, vec!["owned"]);
        assert!(plan.has_changes(true));
        assert!(!plan.has_changes(false), "kept is unchanged");
    }

    #[tokio::test]
    async fn actions_follow_the_servers_answers() {
        let server = FakeServer::default();
        let app = app();
        server.put(marked(config_map("shop", "same"), &app));
        let mut before = marked(config_map("shop", "changed"), &app);
        before["data"]["k"] = json!("old");
        server.put(before);
        // Namespace defaulted from the destination; the mark is set by the plan.
        let mut new = config_map("shop", "new");
        new["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("namespace");

        let plan = plan_with(
            &server,
            &[
                new,
                config_map("shop", "same"),
                config_map("shop", "changed"),
            ],
            &Inventory::new(),
            &PlanOptions::default(),
        )
        .await
        .expect("plan");
        let actions: Vec<(&str, Action)> = plan
            .changes
            .iter()
            .map(|c| (c.object.name.as_str(), c.action))
            .collect();
        assert_eq!(
            actions,
            vec![
                ("new", Action::Create),
                ("same", Action::Unchanged),
                ("changed", Action::Update),
            ]
        );
        assert_eq!(plan.changes[0].object.namespace.as_deref(), Some("shop"));
        assert!(
            plan.changes
                .iter()
                .all(|c| ownership::is_owned_by(&c.desired, &app))
        );
        assert!(
            plan.changes[2].diff.contains("-  k: old") && plan.changes[2].diff.contains("+  k: v")
        );
        assert_eq!(plan.changes[1].live_resource_version.as_deref(), Some("1"));
        assert_eq!(server.dry_runs().len(), 3);
    }

    #[tokio::test]
    async fn objects_of_a_namespace_or_crd_this_sync_creates_are_not_dry_run() {
        let server = FakeServer::default();
        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fresh"}});
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                         "metadata": {"name": "widgets.example.com"},
                         "spec": {"group": "example.com", "scope": "Namespaced",
                                  "names": {"kind": "Widget", "plural": "widgets"}}});
        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                            "metadata": {"name": "w"}});
        let plan = plan_with(
            &server,
            &[
                namespace,
                config_map("fresh", "inside"),
                crd,
                widget.clone(),
            ],
            &Inventory::new(),
            &PlanOptions::default(),
        )
        .await
        .expect("plan");
        let reasons: Vec<(&str, Action, Option<NotDryRun>)> = plan
            .changes
            .iter()
            .map(|c| (c.object.name.as_str(), c.action, c.not_dry_run))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("fresh", Action::Create, None),
                (
                    "inside",
                    Action::Create,
                    Some(NotDryRun::NamespaceCreatedBySync)
                ),
                ("widgets.example.com", Action::Create, None),
                ("w", Action::Create, Some(NotDryRun::CrdCreatedBySync)),
            ]
        );
        assert_eq!(plan.changes[3].object.namespace.as_deref(), Some("shop"));
        assert_eq!(
            server.dry_runs(),
            vec![
                "Namespace fresh",
                "CustomResourceDefinition.apiextensions.k8s.io widgets.example.com"
            ]
        );

        // Without its CRD in the set, an unknown kind is refused before anything is dry-run.
        let err = plan_with(
            &server,
            &[widget],
            &Inventory::new(),
            &PlanOptions::default(),
        )
        .await
        .expect_err("unknown kind");
        assert!(matches!(err, PlanError::UnknownKind { .. }), "{err}");
    }

    #[tokio::test]
    async fn an_immutable_change_is_a_replace_only_when_allowed() {
        let server = FakeServer::default();
        let app = app();
        let mut live = marked(config_map("shop", "pinned"), &app);
        live["data"]["k"] = json!("old");
        server.put(live);
        server.immutable("pinned");
        let err = plan_with(
            &server,
            &[config_map("shop", "pinned")],
            &Inventory::new(),
            &PlanOptions::default(),
        )
        .await
        .expect_err("immutable");
        assert!(
            err.cluster_error()
                .is_some_and(ClusterError::is_immutable_field),
            "{err}"
        );
        let plan = plan_with(
            &server,
            &[config_map("shop", "pinned")],
            &Inventory::new(),
            &PlanOptions {
                replace: true,
                ..Default::default()
            },
        )
        .await
        .expect("plan");
        assert_eq!(plan.changes[0].action, Action::Replace);
        assert_eq!(
            plan.changes[0].not_dry_run,
            Some(NotDryRun::ImmutableReplace)
        );
    }

    /// The refusal an invalid object gets: (provenance, kind, field, refused value).
    fn refusal(result: Result<Plan, PlanError>) -> (String, String, &'static str, String) {
        match result {
            Err(PlanError::InvalidName {
                provenance,
                kind,
                field,
                source,
            }) => (provenance, kind, field, source.value),
            other => panic!("expected an invalid name, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn hostile_names_are_refused_before_any_request() {
        let long = "a".repeat(254);
        for name in [
            "a?fieldManager=x&force=true#",
            "a/b",
            "..",
            ".",
            "a%2Fb",
            "A",
            "",
            long.as_str(),
        ] {
            let server = FakeServer::default();
            let mut bad = config_map("shop", "bad");
            bad["metadata"]["name"] = json!(name);
            let result = plan_with(
                &server,
                &[config_map("shop", "good"), bad],
                &Inventory::default(),
                &PlanOptions::default(),
            )
            .await;
            if name.is_empty() {
                // No name at all: refused as before, naming the document.
                assert!(
                    matches!(&result, Err(PlanError::Invalid { provenance, .. }) if provenance == "app.yaml#1"),
                    "{result:?}"
                );
            } else {
                let message = result
                    .as_ref()
                    .map(|_| ())
                    .expect_err("refused")
                    .to_string();
                assert_eq!(
                    refusal(result),
                    (
                        "app.yaml#1".into(),
                        "ConfigMap".into(),
                        "metadata.name",
                        name.to_string()
                    ),
                );
                assert!(
                    message.starts_with("app.yaml#1: ConfigMap metadata.name: "),
                    "{message}"
                );
            }
            assert_eq!(server.requests(), Vec::<String>::new(), "{name:?}");
        }
    }

    #[tokio::test]
    async fn hostile_namespaces_api_versions_and_crd_names_are_refused_before_any_request() {
        let server = FakeServer::default();
        let result = plan_with(
            &server,
            &[config_map("shop", "good"), config_map("x?y", "a")],
            &Inventory::default(),
            &PlanOptions::default(),
        )
        .await;
        assert_eq!(
            refusal(result),
            (
                "app.yaml#1".into(),
                "ConfigMap".into(),
                "metadata.namespace",
                "x?y".into()
            )
        );
        assert_eq!(server.requests(), Vec::<String>::new());

        let mut bad = config_map("shop", "a");
        bad["apiVersion"] = json!("v1?dryRun=#");
        let result = plan_with(
            &server,
            &[bad],
            &Inventory::default(),
            &PlanOptions::default(),
        )
        .await;
        assert_eq!(
            refusal(result),
            (
                "app.yaml#0".into(),
                "ConfigMap".into(),
                "apiVersion",
                "v1?dryRun=#".into()
            )
        );

        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widget.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "widgets", "kind": "Widget"}}});
        let result = plan_with(
            &server,
            &[crd],
            &Inventory::default(),
            &PlanOptions::default(),
        )
        .await;
        assert_eq!(
            refusal(result),
            (
                "app.yaml#0".into(),
                "CustomResourceDefinition".into(),
                "metadata.name",
                "widget.example.com".into()
            )
        );
        assert_eq!(server.requests(), Vec::<String>::new());

        let result = plan(
            &server,
            &app(),
            "shop?x",
            desired(&[config_map("shop", "a")]),
            &Inventory::default(),
            &PlanOptions::default(),
        )
        .await;
        assert!(
            matches!(&result, Err(PlanError::InvalidDestination { source }) if source.value == "shop?x"),
            "{result:?}"
        );
        assert_eq!(server.requests(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn names_the_server_accepts_are_planned() {
        let server = FakeServer::default();
        let cluster_role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "system:capstan viewer"}, "rules": []});
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                     "names": {"plural": "widgets", "kind": "Widget"}}});
        let mut defaulted = config_map("shop", "defaulted");
        defaulted["metadata"]["namespace"] = json!("");
        let plan = plan_with(
            &server,
            &[
                cluster_role,
                crd,
                config_map("other", "web.v1-2"),
                defaulted,
            ],
            &Inventory::default(),
            &PlanOptions::default(),
        )
        .await
        .expect("plan");
        let planned: Vec<String> = plan.changes.iter().map(|c| c.object.to_string()).collect();
        assert_eq!(
            planned,
            vec![
                "ClusterRole.rbac.authorization.k8s.io system:capstan viewer",
                "CustomResourceDefinition.apiextensions.k8s.io widgets.example.com",
                "ConfigMap other/web.v1-2",
                // An empty namespace is defaulted, as kubectl does.
                "ConfigMap shop/defaulted",
            ]
        );
    }

    #[tokio::test]
    async fn an_object_declared_twice_is_refused() {
        let server = FakeServer::default();
        let err = plan_with(
            &server,
            &[config_map("shop", "twice"), config_map("shop", "twice")],
            &Inventory::new(),
            &PlanOptions::default(),
        )
        .await
        .expect_err("duplicate");
        assert!(
            matches!(&err, PlanError::Duplicate { provenance, first, .. }
                if provenance == "app.yaml#1" && first == "app.yaml#0"),
            "{err}"
        );
    }
}
