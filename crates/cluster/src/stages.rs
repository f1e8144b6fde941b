//! The adapter: the traits the stages define for what they need from a cluster, implemented for
//! [`Cluster`], in one place. The stages depend on `capstan-core` for the words
//! ([`ClusterError`], [`Ownership`], …) and never on this crate, so each of them can be tested
//! against an in-memory fake; this module is the only place where a stage meets the API server.
//!
//! Each method forwards to the `Cluster` verb of the same meaning; errors are the verbs' own.

use capstan_core::ObjectRef;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::DynamicObject;

use crate::{Cluster, ClusterError, Deleted, Ownership, PropagationPolicy};

impl capstan_plan::ServerView for Cluster {
    async fn namespaced(&self, object: &ObjectRef) -> Result<Option<bool>, ClusterError> {
        match self.resolve(object).await {
            Ok(kind) => Ok(Some(kind.namespaced)),
            Err(ClusterError::UnknownKind { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn dry_run_apply(&self, desired: &DynamicObject) -> Result<DynamicObject, ClusterError> {
        Cluster::apply(self, desired, Ownership::Force, true).await
    }

    async fn live(&self, object: &ObjectRef) -> Result<Option<DynamicObject>, ClusterError> {
        Cluster::get(self, object).await
    }

    async fn list(
        &self,
        kind: &ObjectRef,
        namespace: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<DynamicObject>>, ClusterError> {
        Cluster::list_bounded(self, kind, namespace, limit).await
    }
}

impl capstan_inventory::ConfigMaps for Cluster {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ClusterError> {
        Cluster::config_map(self, namespace, name).await
    }

    async fn list_config_maps(
        &self,
        namespace: &str,
        label_selector: &str,
    ) -> Result<Vec<ConfigMap>, ClusterError> {
        Cluster::list_config_maps(self, namespace, label_selector).await
    }

    async fn create_config_map(
        &self,
        namespace: &str,
        config_map: &ConfigMap,
    ) -> Result<ConfigMap, ClusterError> {
        Cluster::create_config_map(self, namespace, config_map).await
    }

    async fn replace_config_map(
        &self,
        namespace: &str,
        config_map: &ConfigMap,
    ) -> Result<ConfigMap, ClusterError> {
        Cluster::replace_config_map(self, namespace, config_map).await
    }

    async fn delete_config_map(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        Cluster::delete_config_map(self, namespace, name).await
    }

    async fn ensure_namespace(&self, name: &str) -> Result<bool, ClusterError> {
        Cluster::ensure_namespace(self, name).await
    }
}

impl capstan_apply::ApplyTarget for Cluster {
    async fn apply(
        &self,
        desired: &DynamicObject,
        ownership: Ownership,
    ) -> Result<DynamicObject, ClusterError> {
        Cluster::apply(self, desired, ownership, false).await
    }

    async fn delete(
        &self,
        object: &ObjectRef,
        propagation: PropagationPolicy,
    ) -> Result<Deleted, ClusterError> {
        Cluster::delete(self, object, propagation).await
    }

    async fn get(&self, object: &ObjectRef) -> Result<Option<DynamicObject>, ClusterError> {
        Cluster::get(self, object).await
    }

    fn forget_discovery(&self) {
        Cluster::forget_discovery(self)
    }
}

impl capstan_health::HealthView for Cluster {
    async fn read(&self, object: &ObjectRef) -> Result<Option<DynamicObject>, ClusterError> {
        Cluster::get(self, object).await
    }

    async fn pods(
        &self,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> Result<Vec<DynamicObject>, ClusterError> {
        let pods = ObjectRef {
            group: String::new(),
            version: "v1".into(),
            kind: "Pod".into(),
            namespace: None,
            name: String::new(),
        };
        Cluster::list(self, &pods, namespace, Some(label_selector)).await
    }
}
