//! The controller's own Kubernetes plumbing, in one module: reading its custom resources and the
//! Secrets they name, writing their status, and publishing Events. Everything an app syncs goes
//! through the engine and `capstan-cluster`, never through here.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ControllerError;
use crate::api::{Application, GitRepository};

/// Field manager for status writes: the same `capstan` as every apply.
const FIELD_MANAGER: &str = capstan_cluster::FIELD_MANAGER;

#[derive(Clone)]
pub struct KubeApi {
    client: Client,
    recorder: Recorder,
}

impl KubeApi {
    pub fn new(client: Client, instance: Option<String>) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "capstan-controller".into(),
                instance,
            },
        );
        Self { client, recorder }
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub fn apps(&self, namespace: Option<&str>) -> Api<Application> {
        match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    pub fn repos(&self, namespace: Option<&str>) -> Api<GitRepository> {
        match namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// A Secret's data, or a clear error naming it.
    pub async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, ControllerError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|source| ControllerError::Kube {
                what: format!("get Secret {namespace}/{name}"),
                source,
            })?
            .ok_or_else(|| ControllerError::MissingSecret {
                secret: format!("{namespace}/{name}"),
            })?;
        Ok(secret
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(key, value)| (key, value.0))
            .collect())
    }

    /// Writes `status` with a merge patch on the status subresource.
    pub async fn patch_status<K, S>(&self, object: &K, status: &S) -> Result<(), ControllerError>
    where
        K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
        S: Serialize,
    {
        let namespace = object.namespace().unwrap_or_default();
        let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
        let patch = serde_json::json!({ "status": status });
        api.patch_status(
            &object.name_any(),
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await
        .map(|_| ())
        .map_err(|source| ControllerError::Kube {
            what: format!(
                "patch status of {} {namespace}/{}",
                K::kind(&()),
                object.name_any()
            ),
            source,
        })
    }

    /// Merges `annotations` into an object's metadata (`capstan app sync`, `rollback`, `unpin`);
    /// a `None` value removes the key.
    pub async fn annotate<K>(
        &self,
        api: &Api<K>,
        name: &str,
        annotations: BTreeMap<&str, Option<String>>,
    ) -> Result<K, ControllerError>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let patch = serde_json::json!({ "metadata": { "annotations": annotations } });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| ControllerError::Kube {
                what: format!("annotate {} {name}", K::kind(&())),
                source,
            })
    }

    /// Publishes an Event about `object`; a failure is logged, never fatal (Events are best effort).
    pub async fn event<K>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(crate::conditions::truncate(&note, 1000)),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, reason, "could not publish event");
        }
    }
}
