//! Object verbs for every other stage: resolve a kind to its resource (with a discovery cache), and
//! get, server-side apply (for real or as a dry-run) and delete one object. Field manager: `capstan`.
//!
//! kube's `Api` puts names and namespaces into URLs as they are. Every verb here first checks them
//! (`capstan_core::names`: [`ClusterError::InvalidName`], nothing sent) and then hands kube only
//! escaped path segments.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use capstan_core::ObjectRef;
use capstan_core::names::{self, escape_segment};
use kube::Api;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PropagationPolicy,
};
use kube::discovery::{self, Scope};

use crate::{Cluster, ClusterError, Deleted, FIELD_MANAGER, Ownership};

/// A kind as the API server serves it.
#[derive(Clone, Debug)]
pub struct ResolvedKind {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// (group, version, kind)
type KindKey = (String, String, String);

/// Discovery answers by kind. Shared by clones of one [`Cluster`].
#[derive(Clone, Default)]
pub(crate) struct DiscoveryCache(Arc<Mutex<HashMap<KindKey, ResolvedKind>>>);

impl Cluster {
    /// Resolves a kind to its resource, asking the API server once per kind until
    /// [`Cluster::forget_discovery`].
    pub async fn resolve(&self, object: &ObjectRef) -> Result<ResolvedKind, ClusterError> {
        names::api_version(&object.api_version()).map_err(|source| ClusterError::InvalidName {
            object: object.to_string(),
            field: "apiVersion",
            source,
        })?;
        let key = (
            object.group.clone(),
            object.version.clone(),
            object.kind.clone(),
        );
        if let Some(hit) = self.discovery.lock_cache().get(&key) {
            return Ok(hit.clone());
        }
        let gvk = GroupVersionKind::gvk(&object.group, &object.version, &object.kind);
        let (resource, capabilities) =
            discovery::pinned_kind(&self.client, &gvk)
                .await
                .map_err(|source| match source {
                    kube::Error::Discovery(_) => ClusterError::UnknownKind {
                        api_version: object.api_version(),
                        kind: object.kind.clone(),
                    },
                    kube::Error::Api(ref status) if status.code == 404 => {
                        ClusterError::UnknownKind {
                            api_version: object.api_version(),
                            kind: object.kind.clone(),
                        }
                    }
                    other => self.api_error("discover", object.api_version(), other),
                })?;
        let resolved = ResolvedKind {
            resource,
            namespaced: capabilities.scope == Scope::Namespaced,
        };
        self.discovery.lock_cache().insert(key, resolved.clone());
        Ok(resolved)
    }

    /// Drops cached discovery, e.g. after CRDs were applied or removed.
    pub fn forget_discovery(&self) {
        self.discovery.lock_cache().clear();
    }

    /// The API of `object`'s kind (in its namespace), once its name and namespace are checked.
    /// Callers pass kube the name through [`escape_segment`].
    async fn api_for(&self, object: &ObjectRef) -> Result<Api<DynamicObject>, ClusterError> {
        let kind = self.resolve(object).await?;
        names::object_name(&object.group, &object.kind, &object.name).map_err(|source| {
            ClusterError::InvalidName {
                object: object.to_string(),
                field: "metadata.name",
                source,
            }
        })?;
        Ok(match (&object.namespace, kind.namespaced) {
            (Some(ns), true) => Api::namespaced_with(
                self.client.clone(),
                &checked_namespace(ns, || object.to_string())?,
                &kind.resource,
            ),
            (None, true) => {
                return Err(ClusterError::MissingNamespace {
                    object: object.to_string(),
                });
            }
            (_, false) => Api::all_with(self.client.clone(), &kind.resource),
        })
    }

    /// The live object, or `None` when it does not exist.
    pub async fn get(&self, object: &ObjectRef) -> Result<Option<DynamicObject>, ClusterError> {
        let api = self.api_for(object).await?;
        api.get_opt(&escape_segment(&object.name))
            .await
            .map_err(|e| self.api_error("get", object.to_string(), e))
    }

    /// Objects of one kind, optionally in one namespace and matching a label selector. Items carry
    /// apiVersion and kind (a list response leaves them out of its items).
    pub async fn list(
        &self,
        kind: &ObjectRef,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<DynamicObject>, ClusterError> {
        let mut params = ListParams::default();
        if let Some(selector) = label_selector {
            params = params.labels(selector);
        }
        Ok(self.list_page(kind, namespace, &params).await?.0)
    }

    /// One LIST request; the items (with apiVersion and kind) and whether more pages follow.
    async fn list_page(
        &self,
        kind: &ObjectRef,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<(Vec<DynamicObject>, bool), ClusterError> {
        let resolved = self.resolve(kind).await?;
        let api: Api<DynamicObject> = match namespace {
            Some(ns) if resolved.namespaced => Api::namespaced_with(
                self.client.clone(),
                &checked_namespace(ns, || format!("{} in namespace {ns}", kind.kind))?,
                &resolved.resource,
            ),
            _ => Api::all_with(self.client.clone(), &resolved.resource),
        };
        let list = api
            .list(params)
            .await
            .map_err(|e| self.api_error("list", kind.api_version() + " " + &kind.kind, e))?;
        let more = list
            .metadata
            .continue_
            .as_deref()
            .is_some_and(|token| !token.is_empty());
        let types = kube::api::TypeMeta {
            api_version: resolved.resource.api_version.clone(),
            kind: resolved.resource.kind.clone(),
        };
        let items = list
            .items
            .into_iter()
            .map(|mut item| {
                item.types = Some(types.clone());
                item
            })
            .collect();
        Ok((items, more))
    }

    /// Like [`Cluster::list`] without a selector, but `None` when more than `limit` objects exist
    /// (one page of at most `limit` is read, never more).
    pub async fn list_bounded(
        &self,
        kind: &ObjectRef,
        namespace: Option<&str>,
        limit: u32,
    ) -> Result<Option<Vec<DynamicObject>>, ClusterError> {
        let (items, more) = self
            .list_page(kind, namespace, &ListParams::default().limit(limit))
            .await?;
        Ok((!more).then_some(items))
    }

    /// Server-side apply with field manager `capstan`. With `dry_run`, the server answers with the
    /// object as it would store it, and stores nothing.
    pub async fn apply(
        &self,
        desired: &DynamicObject,
        ownership: Ownership,
        dry_run: bool,
    ) -> Result<DynamicObject, ClusterError> {
        let object =
            ObjectRef::from_object(desired).map_err(|source| ClusterError::Object { source })?;
        let api = self.api_for(&object).await?;
        let mut params = PatchParams::apply(FIELD_MANAGER);
        if ownership == Ownership::Force {
            params = params.force();
        }
        if dry_run {
            params = params.dry_run();
        }
        let verb = if dry_run { "dry-run apply" } else { "apply" };
        api.patch(
            &escape_segment(&object.name),
            &params,
            &Patch::Apply(desired),
        )
        .await
        .map_err(|e| self.api_error(verb, object.to_string(), e))
    }

    /// Deletes one object with the given propagation policy.
    pub async fn delete(
        &self,
        object: &ObjectRef,
        propagation: PropagationPolicy,
    ) -> Result<Deleted, ClusterError> {
        let api = self.api_for(object).await?;
        let params = DeleteParams {
            propagation_policy: Some(propagation),
            ..Default::default()
        };
        match api.delete(&escape_segment(&object.name), &params).await {
            Ok(_) => Ok(Deleted::Requested),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(Deleted::AlreadyGone),
            Err(e) => Err(self.api_error("delete", object.to_string(), e)),
        }
    }
}

/// `namespace`, checked (a DNS-1123 label) and escaped for a URL; `object` names what the request
/// was for.
pub(crate) fn checked_namespace(
    namespace: &str,
    object: impl FnOnce() -> String,
) -> Result<String, ClusterError> {
    names::namespace(namespace).map_err(|source| ClusterError::InvalidName {
        object: object(),
        field: "metadata.namespace",
        source,
    })?;
    Ok(escape_segment(namespace).into_owned())
}

impl DiscoveryCache {
    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<KindKey, ResolvedKind>> {
        // A panic while holding the lock cannot leave the map half-written (insert/clear are atomic
        // from our side), so a poisoned lock is still usable.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
