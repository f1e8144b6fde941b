//! An in-memory [`ConfigMaps`] for unit tests, with the API server's rules the store relies on:
//! resourceVersions that change on every write, replace only from the live resourceVersion (else
//! HTTP 409 `Conflict`), create only under a free name (else 409 `AlreadyExists`) in an existing
//! namespace (else 404), and equality/existence label selectors.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use capstan_core::api::ClusterError;
use k8s_openapi::api::core::v1::ConfigMap;

use crate::ConfigMaps;

#[derive(Default)]
struct State {
    namespaces: BTreeSet<String>,
    /// (namespace, name) → ConfigMap as stored.
    maps: BTreeMap<(String, String), ConfigMap>,
    last_version: u64,
    /// Creates, replaces and deletes that changed something.
    writes: usize,
}

/// Clones share one store, like clones of a `Cluster` share one API server.
#[derive(Clone, Default)]
pub struct FakeConfigMaps(Arc<Mutex<State>>);

pub fn rejected(verb: &str, object: String, code: u16, reason: &str) -> ClusterError {
    ClusterError::Rejected {
        verb: verb.into(),
        message: format!("{object}: {reason}"),
        object,
        code,
        reason: reason.into(),
        causes: Vec::new(),
    }
}

fn matches(config_map: &ConfigMap, selector: &str) -> bool {
    let labels = config_map.metadata.labels.clone().unwrap_or_default();
    selector
        .split(',')
        .filter(|term| !term.is_empty())
        .all(|term| match term.split_once('=') {
            Some((key, value)) => labels.get(key).map(String::as_str) == Some(value),
            None => labels.contains_key(term),
        })
}

impl FakeConfigMaps {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().expect("fake state")
    }

    pub fn with_namespace(name: &str) -> Self {
        let fake = Self::default();
        fake.state().namespaces.insert(name.to_string());
        fake
    }

    /// Names of the ConfigMaps in `namespace`, sorted.
    pub fn names(&self, namespace: &str) -> Vec<String> {
        self.state()
            .maps
            .keys()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, name)| name.clone())
            .collect()
    }

    pub fn writes(&self) -> usize {
        self.state().writes
    }

    /// Stores `config_map` as if another client had written it.
    pub fn put(&self, namespace: &str, mut config_map: ConfigMap) {
        let mut state = self.state();
        state.last_version += 1;
        config_map.metadata.resource_version = Some(state.last_version.to_string());
        let name = config_map.metadata.name.clone().unwrap_or_default();
        state.maps.insert((namespace.into(), name), config_map);
    }

    fn store(state: &mut State, namespace: &str, config_map: &ConfigMap) -> ConfigMap {
        state.last_version += 1;
        state.writes += 1;
        let mut stored = config_map.clone();
        stored.metadata.namespace = Some(namespace.to_string());
        stored.metadata.resource_version = Some(state.last_version.to_string());
        let name = stored.metadata.name.clone().unwrap_or_default();
        state
            .maps
            .insert((namespace.to_string(), name), stored.clone());
        stored
    }
}

impl ConfigMaps for FakeConfigMaps {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ClusterError> {
        Ok(self
            .state()
            .maps
            .get(&(namespace.to_string(), name.to_string()))
            .cloned())
    }

    async fn list_config_maps(
        &self,
        namespace: &str,
        label_selector: &str,
    ) -> Result<Vec<ConfigMap>, ClusterError> {
        Ok(self
            .state()
            .maps
            .iter()
            .filter(|((ns, _), map)| ns == namespace && matches(map, label_selector))
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
        if !state.namespaces.contains(namespace) {
            return Err(rejected("create", shown, 404, "NotFound"));
        }
        if state.maps.contains_key(&(namespace.to_string(), name)) {
            return Err(rejected("create", shown, 409, "AlreadyExists"));
        }
        Ok(Self::store(&mut state, namespace, config_map))
    }

    async fn replace_config_map(
        &self,
        namespace: &str,
        config_map: &ConfigMap,
    ) -> Result<ConfigMap, ClusterError> {
        let name = config_map.metadata.name.clone().unwrap_or_default();
        let shown = format!("ConfigMap {namespace}/{name}");
        let mut state = self.state();
        let Some(live) = state.maps.get(&(namespace.to_string(), name)) else {
            return Err(rejected("replace", shown, 404, "NotFound"));
        };
        if config_map.metadata.resource_version.is_some()
            && config_map.metadata.resource_version != live.metadata.resource_version
        {
            return Err(rejected("replace", shown, 409, "Conflict"));
        }
        Ok(Self::store(&mut state, namespace, config_map))
    }

    async fn delete_config_map(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        let mut state = self.state();
        if state
            .maps
            .remove(&(namespace.to_string(), name.to_string()))
            .is_some()
        {
            state.writes += 1;
        }
        Ok(())
    }

    async fn ensure_namespace(&self, name: &str) -> Result<bool, ClusterError> {
        Ok(self.state().namespaces.insert(name.to_string()))
    }
}
