//! An in-memory [`ServerView`] for unit tests: a table of served kinds, live objects with
//! resourceVersions, and a dry-run apply that merges the desired object into the live one (maps
//! merged key by key, anything else replaced) the way a server-side apply of the fields Git declares
//! would, or answers a create without a resourceVersion. Objects can be set to be refused with "field is
//! immutable". Dry-runs are counted, and every request that names an object or a namespace (get,
//! list, dry-run) is logged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use capstan_core::ObjectRef;
use capstan_core::api::{ClusterError, FIELD_IMMUTABLE_MESSAGE};
use kube::api::DynamicObject;
use kube::core::response::StatusCause;
use serde_json::Value;

use crate::ServerView;

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
    /// (group, kind) → namespaced.
    kinds: BTreeMap<(String, String), bool>,
    objects: BTreeMap<Key, DynamicObject>,
    immutable: BTreeSet<String>,
    last_version: u64,
    dry_runs: Vec<String>,
    /// `get …`, `list …`, `dry-run …`: what a real server would have been sent.
    requests: Vec<String>,
}

#[derive(Clone)]
pub struct FakeServer(Arc<Mutex<State>>);

/// Serves the core kinds the tests use, Deployments and CRDs.
impl Default for FakeServer {
    fn default() -> Self {
        let mut state = State::default();
        for (group, kind, namespaced) in [
            ("", "Namespace", false),
            ("", "ConfigMap", true),
            ("", "Secret", true),
            ("apps", "Deployment", true),
            ("apiextensions.k8s.io", "CustomResourceDefinition", false),
            ("rbac.authorization.k8s.io", "ClusterRole", false),
        ] {
            state.kinds.insert((group.into(), kind.into()), namespaced);
        }
        Self(Arc::new(Mutex::new(state)))
    }
}

fn merge(live: &mut Value, desired: &Value) {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => {
            for (key, value) in desired {
                match live.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        live.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (live, desired) => *live = desired.clone(),
    }
}

impl FakeServer {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().expect("fake state")
    }

    /// Stores `object` as live, with a new resourceVersion.
    pub fn put(&self, object: Value) {
        let mut object: DynamicObject = serde_json::from_value(object).expect("object");
        let reference = ObjectRef::from_object(&object).expect("reference");
        let mut state = self.state();
        state.last_version += 1;
        object.metadata.resource_version = Some(state.last_version.to_string());
        state.objects.insert(key(&reference), object);
    }

    /// Dry-runs of objects named `name` that change an existing object fail: "field is immutable".
    pub fn immutable(&self, name: &str) {
        self.state().immutable.insert(name.into());
    }

    /// The objects dry-run so far, as `Kind[.group] namespace/name`.
    pub fn dry_runs(&self) -> Vec<String> {
        self.state().dry_runs.clone()
    }

    /// Every get, list and dry-run so far (discovery, which names only a kind, is not logged).
    pub fn requests(&self) -> Vec<String> {
        self.state().requests.clone()
    }
}

impl ServerView for FakeServer {
    async fn namespaced(&self, object: &ObjectRef) -> Result<Option<bool>, ClusterError> {
        Ok(self
            .state()
            .kinds
            .get(&(object.group.clone(), object.kind.clone()))
            .copied())
    }

    async fn dry_run_apply(&self, desired: &DynamicObject) -> Result<DynamicObject, ClusterError> {
        let reference =
            ObjectRef::from_object(desired).map_err(|source| ClusterError::Object { source })?;
        let mut state = self.state();
        state.dry_runs.push(reference.to_string());
        state.requests.push(format!("dry-run {reference}"));
        let Some(live) = state.objects.get(&key(&reference)) else {
            return Ok(desired.clone());
        };
        if state.immutable.contains(&reference.name) {
            let message = format!("spec.selector: Invalid value: {FIELD_IMMUTABLE_MESSAGE}");
            return Err(ClusterError::Rejected {
                verb: "dry-run apply".into(),
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
        let mut merged = serde_json::to_value(live).expect("live");
        let mut desired = serde_json::to_value(desired).expect("desired");
        // The server keeps its own resourceVersion; the answer carries the live one.
        if let Some(metadata) = desired.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("resourceVersion");
        }
        merge(&mut merged, &desired);
        Ok(serde_json::from_value(merged).expect("merged"))
    }

    async fn live(&self, object: &ObjectRef) -> Result<Option<DynamicObject>, ClusterError> {
        let mut state = self.state();
        state.requests.push(format!("get {object}"));
        Ok(state.objects.get(&key(object)).cloned())
    }

    async fn list(
        &self,
        kind: &ObjectRef,
        namespace: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<DynamicObject>>, ClusterError> {
        let mut state = self.state();
        state
            .requests
            .push(format!("list {} in {namespace:?}", kind.kind));
        let items: Vec<DynamicObject> = state
            .objects
            .iter()
            .filter(|((group, k, ns, _), _)| {
                *group == kind.group && *k == kind.kind && ns.as_deref() == namespace
            })
            .map(|(_, object)| object.clone())
            .collect();
        Ok((items.len() <= limit as usize).then_some(items))
    }
}
