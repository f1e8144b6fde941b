//! An in-memory cluster for the engine's unit tests: one store behind every stage's trait, with the
//! API server's rules the engine's safety checks rely on (objects only in existing namespaces,
//! resourceVersions, replace only from the live resourceVersion, refusals on demand) and a log of
//! every write and dry-run.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use capstan_apply::ApplyTarget;
use capstan_core::ObjectRef;
use capstan_core::api::{ClusterError, Deleted, Ownership, PropagationPolicy};
use capstan_health::HealthView;
use capstan_inventory::ConfigMaps;
use capstan_plan::ServerView;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::DynamicObject;
use serde_json::Value;

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
    config_maps: BTreeMap<(String, String), ConfigMap>,
    namespaces: BTreeSet<String>,
    /// Names of objects whose apply is refused, with the status.
    refused: BTreeMap<String, (u16, &'static str)>,
    last_version: u64,
    log: Vec<String>,
}

#[derive(Clone, Default)]
pub struct FakeCluster(Arc<Mutex<State>>);

fn rejected(verb: &str, object: String, code: u16, reason: &str) -> ClusterError {
    ClusterError::Rejected {
        verb: verb.into(),
        message: format!("{object}: {reason}"),
        object,
        code,
        reason: reason.into(),
        causes: Vec::new(),
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

impl FakeCluster {
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

    pub fn refuse(&self, name: &str, code: u16, reason: &'static str) {
        self.state().refused.insert(name.into(), (code, reason));
    }

    pub fn has_namespace(&self, name: &str) -> bool {
        self.state().namespaces.contains(name)
    }

    /// Names of the live objects (not the inventory's ConfigMaps), sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .state()
            .objects
            .keys()
            .map(|(_, _, _, name)| name.clone())
            .collect();
        names.sort();
        names
    }

    /// Every write and dry-run so far: `apply <object>`, `delete <object>`, `dry-run <object>`,
    /// `write ConfigMap <namespace>/<name>`.
    pub fn log(&self) -> Vec<String> {
        self.state().log.clone()
    }

    /// The log entries starting with `verb`.
    pub fn logged(&self, verb: &str) -> Vec<String> {
        self.log()
            .into_iter()
            .filter(|entry| entry.starts_with(verb))
            .collect()
    }
}

impl ServerView for FakeCluster {
    async fn namespaced(&self, object: &ObjectRef) -> Result<Option<bool>, ClusterError> {
        Ok(match (object.group.as_str(), object.kind.as_str()) {
            ("", "Namespace") => Some(false),
            ("", "ConfigMap" | "Secret") | ("apps", "Deployment") => Some(true),
            _ => None,
        })
    }

    async fn dry_run_apply(&self, desired: &DynamicObject) -> Result<DynamicObject, ClusterError> {
        let reference =
            ObjectRef::from_object(desired).map_err(|source| ClusterError::Object { source })?;
        let mut state = self.state();
        state.log.push(format!("dry-run {reference}"));
        let Some(live) = state.objects.get(&key(&reference)) else {
            return Ok(desired.clone());
        };
        let mut merged = serde_json::to_value(live).expect("live");
        merge(
            &mut merged,
            &serde_json::to_value(desired).expect("desired"),
        );
        Ok(serde_json::from_value(merged).expect("merged"))
    }

    async fn live(&self, object: &ObjectRef) -> Result<Option<DynamicObject>, ClusterError> {
        Ok(self.state().objects.get(&key(object)).cloned())
    }

    async fn list(
        &self,
        kind: &ObjectRef,
        namespace: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<DynamicObject>>, ClusterError> {
        let items: Vec<DynamicObject> = self
            .state()
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

impl ApplyTarget for FakeCluster {
    async fn apply(
        &self,
        desired: &DynamicObject,
        _ownership: Ownership,
    ) -> Result<DynamicObject, ClusterError> {
        let reference =
            ObjectRef::from_object(desired).map_err(|source| ClusterError::Object { source })?;
        let mut state = self.state();
        state.log.push(format!("apply {reference}"));
        if let Some((code, reason)) = state.refused.get(&reference.name) {
            return Err(rejected("apply", reference.to_string(), *code, reason));
        }
        if let Some(namespace) = &reference.namespace
            && !state.namespaces.contains(namespace)
        {
            return Err(rejected("apply", reference.to_string(), 404, "NotFound"));
        }
        if reference.group.is_empty() && reference.kind == "Namespace" {
            state.namespaces.insert(reference.name.clone());
        }
        state.last_version += 1;
        let mut stored = desired.clone();
        stored.metadata.resource_version = Some(state.last_version.to_string());
        state.objects.insert(key(&reference), stored.clone());
        Ok(stored)
    }

    async fn delete(
        &self,
        object: &ObjectRef,
        _propagation: PropagationPolicy,
    ) -> Result<Deleted, ClusterError> {
        let mut state = self.state();
        state.log.push(format!("delete {object}"));
        Ok(match state.objects.remove(&key(object)) {
            Some(_) => Deleted::Requested,
            None => Deleted::AlreadyGone,
        })
    }

    async fn get(&self, object: &ObjectRef) -> Result<Option<DynamicObject>, ClusterError> {
        Ok(self.state().objects.get(&key(object)).cloned())
    }

    fn forget_discovery(&self) {}
}

impl ConfigMaps for FakeCluster {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ClusterError> {
        Ok(self
            .state()
            .config_maps
            .get(&(namespace.into(), name.into()))
            .cloned())
    }

    async fn list_config_maps(
        &self,
        namespace: &str,
        label_selector: &str,
    ) -> Result<Vec<ConfigMap>, ClusterError> {
        Ok(self
            .state()
            .config_maps
            .iter()
            .filter(|((ns, _), map)| {
                let labels = map.metadata.labels.clone().unwrap_or_default();
                ns == namespace
                    && label_selector
                        .split(',')
                        .all(|term| match term.split_once('=') {
                            Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
                            None => labels.contains_key(term),
                        })
            })
            .map(|(_, map)| map.clone())
            .collect())
    }

    async fn create_config_map(
        &self,
        namespace: &str,
        config_map: &ConfigMap,
    ) -> Result<ConfigMap, ClusterError> {
        let name = config_map.metadata.name.clone().unwrap_or_default();
        let shown = format!("ConfigMap {namespace}/{name}");
        let mut state = self.state();
        state.log.push(format!("write {shown}"));
        if !state.namespaces.contains(namespace) {
            return Err(rejected("create", shown, 404, "NotFound"));
        }
        if state
            .config_maps
            .contains_key(&(namespace.into(), name.clone()))
        {
            return Err(rejected("create", shown, 409, "AlreadyExists"));
        }
        state.last_version += 1;
        let mut stored = config_map.clone();
        stored.metadata.resource_version = Some(state.last_version.to_string());
        state
            .config_maps
            .insert((namespace.into(), name), stored.clone());
        Ok(stored)
    }

    async fn replace_config_map(
        &self,
        namespace: &str,
        config_map: &ConfigMap,
    ) -> Result<ConfigMap, ClusterError> {
        let name = config_map.metadata.name.clone().unwrap_or_default();
        let shown = format!("ConfigMap {namespace}/{name}");
        let mut state = self.state();
        state.log.push(format!("write {shown}"));
        let live = state
            .config_maps
            .get(&(namespace.into(), name.clone()))
            .ok_or_else(|| rejected("replace", shown.clone(), 404, "NotFound"))?;
        if config_map.metadata.resource_version != live.metadata.resource_version {
            return Err(rejected("replace", shown, 409, "Conflict"));
        }
        state.last_version += 1;
        let mut stored = config_map.clone();
        stored.metadata.resource_version = Some(state.last_version.to_string());
        state
            .config_maps
            .insert((namespace.into(), name), stored.clone());
        Ok(stored)
    }

    async fn delete_config_map(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        let mut state = self.state();
        if state
            .config_maps
            .remove(&(namespace.into(), name.into()))
            .is_some()
        {
            state
                .log
                .push(format!("write ConfigMap {namespace}/{name}"));
        }
        Ok(())
    }

    async fn ensure_namespace(&self, name: &str) -> Result<bool, ClusterError> {
        Ok(self.state().namespaces.insert(name.into()))
    }
}

impl HealthView for FakeCluster {
    async fn read(&self, object: &ObjectRef) -> Result<Option<DynamicObject>, ClusterError> {
        Ok(self.state().objects.get(&key(object)).cloned())
    }

    async fn pods(
        &self,
        _namespace: Option<&str>,
        _label_selector: &str,
    ) -> Result<Vec<DynamicObject>, ClusterError> {
        Ok(Vec::new())
    }
}
