//! ConfigMap verbs for Capstan's own bookkeeping (the inventory). Replace carries the resourceVersion it
//! read, so two writers cannot silently overwrite each other.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::ObjectMeta;
use kube::api::{DeleteParams, ListParams, PostParams};

use crate::{Cluster, ClusterError};

impl Cluster {
    /// Creates the namespace unless it exists (a namespace that is terminating counts as existing and
    /// fails later writes with the server's message). Returns whether it was created.
    pub async fn ensure_namespace(&self, name: &str) -> Result<bool, ClusterError> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        if namespaces
            .get_opt(name)
            .await
            .map_err(|e| self.api_error("get", format!("Namespace {name}"), e))?
            .is_some()
        {
            return Ok(false);
        }
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(
                    [(
                        "app.kubernetes.io/managed-by".to_string(),
                        "capstan".to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        match namespaces.create(&PostParams::default(), &namespace).await {
            Ok(_) => Ok(true),
            // Someone else created it meanwhile: as good as ours.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(self.api_error("create", format!("Namespace {name}"), e)),
        }
    }

    fn config_maps(&self, namespace: &str) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), namespace)
    }

    pub async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ClusterError> {
        self.config_maps(namespace)
            .get_opt(name)
            .await
            .map_err(|e| self.api_error("get", format!("ConfigMap {namespace}/{name}"), e))
    }

    pub async fn list_config_maps(
        &self,
        namespace: &str,
        label_selector: &str,
    ) -> Result<Vec<ConfigMap>, ClusterError> {
        self.config_maps(namespace)
            .list(&ListParams::default().labels(label_selector))
            .await
            .map(|list| list.items)
            .map_err(|e| {
                self.api_error(
                    "list",
                    format!("ConfigMaps in {namespace} labelled {label_selector}"),
                    e,
                )
            })
    }

    pub async fn create_config_map(
        &self,
        namespace: &str,
        config_map: &ConfigMap,
    ) -> Result<ConfigMap, ClusterError> {
        let name = config_map.metadata.name.clone().unwrap_or_default();
        self.config_maps(namespace)
            .create(&PostParams::default(), config_map)
            .await
            .map_err(|e| self.api_error("create", format!("ConfigMap {namespace}/{name}"), e))
    }

    /// Replaces the ConfigMap; fails with HTTP 409 when `config_map.metadata.resourceVersion` is no
    /// longer the live one.
    pub async fn replace_config_map(
        &self,
        namespace: &str,
        config_map: &ConfigMap,
    ) -> Result<ConfigMap, ClusterError> {
        let name = config_map.metadata.name.clone().unwrap_or_default();
        self.config_maps(namespace)
            .replace(&name, &PostParams::default(), config_map)
            .await
            .map_err(|e| self.api_error("replace", format!("ConfigMap {namespace}/{name}"), e))
    }

    /// Deletes a ConfigMap; one that is already gone is not an error.
    pub async fn delete_config_map(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        match self
            .config_maps(namespace)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(self.api_error("delete", format!("ConfigMap {namespace}/{name}"), e)),
        }
    }
}
