//! An in-memory [`ApplyTarget`] for unit tests. It keeps the API server's rules apply relies on: an
//! object of a namespace that does not exist, or of a custom kind whose CustomResourceDefinition was
//! not applied, is refused (404 / unknown kind); a CRD is Established as soon as it is applied; a
//! delete is immediate; Jobs complete (or fail, when told) as soon as they are created; objects can
//! be set to be refused (any status, or "field is immutable" while the object exists). Every call is
//! logged, in order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use capstan_core::ObjectRef;
use capstan_core::api::{ClusterError, Deleted, FIELD_IMMUTABLE_MESSAGE, Ownership};
use kube::api::{DynamicObject, PropagationPolicy};
use kube::core::response::StatusCause;
use serde_json::json;

use crate::ApplyTarget;

/// One call, as the fake saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// `Kind[.group] namespace/name` and the ownership asked for.
    Apply(String, Ownership),
    Delete(String, PropagationPolicy),
    ForgetDiscovery,
}

/// How an apply of one object is refused.
#[derive(Clone, Debug)]
pub enum Refusal {
    Status {
        code: u16,
        reason: &'static str,
    },
    /// HTTP 422 with a "field is immutable" cause, only while the object exists.
    Immutable,
}

type Key = (String, String, Option<String>, String);

fn key(object: &ObjectRef) -> Key {
    (
        object.group.clone(),
        object.kind.clone(),
        object.namespace.clone(),
        object.name.clone(),
    )
}

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, DynamicObject>,
    namespaces: BTreeSet<String>,
    /// (group, kind) of custom resources whose CRD was applied.
    custom_kinds: BTreeSet<(String, String)>,
    refusals: BTreeMap<String, Refusal>,
    failing_jobs: BTreeSet<String>,
    calls: Vec<Call>,
}

#[derive(Clone, Default)]
pub struct FakeTarget(Arc<Mutex<State>>);

fn rejected(
    verb: &str,
    object: &ObjectRef,
    code: u16,
    reason: &str,
    message: String,
) -> ClusterError {
    ClusterError::Rejected {
        verb: verb.into(),
        object: object.to_string(),
        code,
        reason: reason.into(),
        message,
        causes: Vec::new(),
    }
}

/// Built-in API groups (the core group and `*.k8s.io`); any other group is a custom resource.
fn built_in(group: &str) -> bool {
    !group.contains('.') || group.ends_with(".k8s.io")
}

impl FakeTarget {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().expect("fake state")
    }

    pub fn with_namespaces(namespaces: &[&str]) -> Self {
        let fake = Self::default();
        fake.state()
            .namespaces
            .extend(namespaces.iter().map(|ns| ns.to_string()));
        fake
    }

    /// Stores `object` as if it had been applied before.
    pub fn put(&self, object: serde_json::Value) {
        let object: DynamicObject = serde_json::from_value(object).expect("object");
        let reference = ObjectRef::from_object(&object).expect("reference");
        self.state().objects.insert(key(&reference), object);
    }

    /// Refuses every apply of objects named `name`.
    pub fn refuse(&self, name: &str, refusal: Refusal) {
        self.state().refusals.insert(name.to_string(), refusal);
    }

    /// Jobs named `name` fail instead of completing.
    pub fn fail_job(&self, name: &str) {
        self.state().failing_jobs.insert(name.to_string());
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// The objects stored now, as `Kind[.group] namespace/name`.
    pub fn stored(&self) -> Vec<String> {
        self.state()
            .objects
            .values()
            .map(|o| ObjectRef::from_object(o).expect("reference").to_string())
            .collect()
    }
}

impl ApplyTarget for FakeTarget {
    async fn apply(
        &self,
        desired: &DynamicObject,
        ownership: Ownership,
    ) -> Result<DynamicObject, ClusterError> {
        let reference =
            ObjectRef::from_object(desired).map_err(|source| ClusterError::Object { source })?;
        let mut state = self.state();
        state
            .calls
            .push(Call::Apply(reference.to_string(), ownership));
        if !built_in(&reference.group)
            && !state
                .custom_kinds
                .contains(&(reference.group.clone(), reference.kind.clone()))
        {
            return Err(ClusterError::UnknownKind {
                api_version: reference.api_version(),
                kind: reference.kind.clone(),
            });
        }
        if let Some(namespace) = &reference.namespace
            && !state.namespaces.contains(namespace)
        {
            let message = format!("namespaces \"{namespace}\" not found");
            return Err(rejected("apply", &reference, 404, "NotFound", message));
        }
        let exists = state.objects.contains_key(&key(&reference));
        match state.refusals.get(&reference.name) {
            Some(Refusal::Status { code, reason }) => {
                let message = format!("refused by the fake ({reason})");
                return Err(rejected("apply", &reference, *code, reason, message));
            }
            Some(Refusal::Immutable) if exists => {
                let message = format!("spec.selector: Invalid value: {FIELD_IMMUTABLE_MESSAGE}");
                return Err(ClusterError::Rejected {
                    verb: "apply".into(),
                    object: reference.to_string(),
                    code: 422,
                    reason: "Invalid".into(),
                    causes: vec![StatusCause {
                        reason: "FieldValueInvalid".into(),
                        message: message.clone(),
                        field: "spec.selector".into(),
                    }],
                    message,
                });
            }
            _ => {}
        }
        let mut stored = desired.clone();
        match (reference.group.as_str(), reference.kind.as_str()) {
            ("", "Namespace") => {
                state.namespaces.insert(reference.name.clone());
            }
            ("apiextensions.k8s.io", "CustomResourceDefinition") => {
                let group = desired.data.pointer("/spec/group").and_then(|g| g.as_str());
                let kind = desired
                    .data
                    .pointer("/spec/names/kind")
                    .and_then(|k| k.as_str());
                if let (Some(group), Some(kind)) = (group, kind) {
                    state.custom_kinds.insert((group.into(), kind.into()));
                }
                stored.data["status"] =
                    json!({"conditions": [{"type": "Established", "status": "True"}]});
            }
            ("batch", "Job") => {
                let outcome = if state.failing_jobs.contains(&reference.name) {
                    "Failed"
                } else {
                    "Complete"
                };
                stored.data["status"] =
                    json!({"conditions": [{"type": outcome, "status": "True"}]});
            }
            _ => {}
        }
        state.objects.insert(key(&reference), stored.clone());
        Ok(stored)
    }

    async fn delete(
        &self,
        object: &ObjectRef,
        propagation: PropagationPolicy,
    ) -> Result<Deleted, ClusterError> {
        let mut state = self.state();
        state
            .calls
            .push(Call::Delete(object.to_string(), propagation));
        if object.group.is_empty() && object.kind == "Namespace" {
            state.namespaces.remove(&object.name);
        }
        Ok(match state.objects.remove(&key(object)) {
            Some(_) => Deleted::Requested,
            None => Deleted::AlreadyGone,
        })
    }

    async fn get(&self, object: &ObjectRef) -> Result<Option<DynamicObject>, ClusterError> {
        Ok(self.state().objects.get(&key(object)).cloned())
    }

    fn forget_discovery(&self) {
        self.state().calls.push(Call::ForgetDiscovery);
    }
}
