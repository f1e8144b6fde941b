//! ConfigMap verbs for Capstan's own bookkeeping (the inventory). Replace carries the resourceVersion it
//! read, so two writers cannot silently overwrite each other. Names and namespaces are checked before
//! any request and escaped into the URL, as in `resources`.

use std::borrow::Cow;

use capstan_core::names::{self, Rule, escape_segment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Api;
use kube::api::ObjectMeta;
use kube::api::{DeleteParams, ListParams, PostParams};

use crate::resources::checked_namespace;
use crate::{Cluster, ClusterError};

/// `name` checked by `rule` and escaped for a URL; `object` names what the request was for.
fn checked_name<'a>(
    name: &'a str,
    rule: Rule,
    object: impl FnOnce() -> String,
) -> Result<Cow<'a, str>, ClusterError> {
    names::check(name, rule).map_err(|source| ClusterError::InvalidName {
        object: object(),
        field: "metadata.name",
        source,
    })?;
    Ok(escape_segment(name))
}

impl Cluster {
    /// Creates the namespace unless it exists (a namespace that is terminating counts as existing and
    /// fails later writes with the server's message). Returns whether it was created.
    pub async fn ensure_namespace(&self, name: &str) -> Result<bool, ClusterError> {
        let segment = checked_name(name, Rule::Dns1123Label, || format!("Namespace {name}"))?;
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        if namespaces
            .get_opt(&segment)
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

    /// ConfigMaps in `namespace`, once it is checked; `object` names what the request is for.
    fn config_maps(
        &self,
        namespace: &str,
        object: impl FnOnce() -> String,
    ) -> Result<Api<ConfigMap>, ClusterError> {
        Ok(Api::namespaced(
            self.client.clone(),
            &checked_namespace(namespace, object)?,
        ))
    }

    /// [`Cluster::config_maps`] and `name` checked and escaped, for a request on one ConfigMap.
    fn config_map_api<'a>(
        &self,
        namespace: &str,
        name: &'a str,
    ) -> Result<(Api<ConfigMap>, Cow<'a, str>), ClusterError> {
        let object = || format!("ConfigMap {namespace}/{name}");
        let api = self.config_maps(namespace, object)?;
        let rule = names::name_rule("", "ConfigMap");
        Ok((api, checked_name(name, rule, object)?))
    }

    pub async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ClusterError> {
        let (api, name_segment) = self.config_map_api(namespace, name)?;
        api.get_opt(&name_segment)
            .await
            .map_err(|e| self.api_error("get", format!("ConfigMap {namespace}/{name}"), e))
    }

    pub async fn list_config_maps(
        &self,
        namespace: &str,
        label_selector: &str,
    ) -> Result<Vec<ConfigMap>, ClusterError> {
        self.config_maps(namespace, || {
            format!("ConfigMaps in {namespace} labelled {label_selector}")
        })?
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
        // The name travels in the body only; the server checks it.
        self.config_maps(namespace, || format!("ConfigMap {namespace}/{name}"))?
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
        let (api, name_segment) = self.config_map_api(namespace, &name)?;
        api.replace(&name_segment, &PostParams::default(), config_map)
            .await
            .map_err(|e| self.api_error("replace", format!("ConfigMap {namespace}/{name}"), e))
    }

    /// Deletes a ConfigMap; one that is already gone is not an error.
    pub async fn delete_config_map(&self, namespace: &str, name: &str) -> Result<(), ClusterError> {
        let (api, name_segment) = self.config_map_api(namespace, name)?;
        match api.delete(&name_segment, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(self.api_error("delete", format!("ConfigMap {namespace}/{name}"), e)),
        }
    }
}
