//! Drift watching: one metadata-only watch per kind that appears in any app's inventory, shared by
//! all apps, filtered by Capstan's ownership label. A change made by anyone but Capstan wakes the
//! owning app at once, so drift is reported (and healed with selfHeal) within seconds instead of at
//! the next interval.
//!
//! Memory stays bounded: watches carry metadata only, nothing is cached (no reflector), and the
//! label selector keeps other objects off the wire.

use std::collections::HashSet;
use std::sync::Mutex;

use capstan_cluster::Cluster;
use capstan_core::ObjectRef as Object;
use capstan_core::ownership::{APP_LABEL, OWNER_ANNOTATION};
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::mpsc::UnboundedSender;

use crate::api::Application;

pub struct DriftWatcher {
    cluster: Cluster,
    /// Only apps in this namespace are woken (a namespace-scoped controller).
    namespace: Option<String>,
    trigger: UnboundedSender<ObjectRef<Application>>,
    watched: Mutex<HashSet<(String, String, String)>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl DriftWatcher {
    pub fn new(
        cluster: Cluster,
        namespace: Option<String>,
        trigger: UnboundedSender<ObjectRef<Application>>,
    ) -> Self {
        Self {
            cluster,
            namespace,
            trigger,
            watched: Mutex::default(),
            tasks: Mutex::default(),
        }
    }

    /// Makes sure every kind among `objects` is watched.
    pub fn watch(&self, objects: &[Object]) {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        for object in objects {
            let key = (
                object.group.clone(),
                object.version.clone(),
                object.kind.clone(),
            );
            if watched.insert(key) {
                let kind = Object {
                    namespace: None,
                    name: String::new(),
                    ..object.clone()
                };
                let task = tokio::spawn(watch_kind(
                    self.cluster.clone(),
                    kind,
                    self.namespace.clone(),
                    self.trigger.clone(),
                ));
                self.tasks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(task);
            }
        }
    }
}

impl Drop for DriftWatcher {
    fn drop(&mut self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

async fn watch_kind(
    cluster: Cluster,
    kind: Object,
    namespace: Option<String>,
    trigger: UnboundedSender<ObjectRef<Application>>,
) {
    let resolved = match cluster.resolve(&kind).await {
        Ok(resolved) => resolved,
        Err(error) => {
            tracing::warn!(kind = %kind.kind, %error, "cannot watch this kind for drift");
            return;
        }
    };
    let api: Api<PartialObjectMeta<DynamicObject>> =
        Api::all_with(cluster.client(), &resolved.resource);
    let config = watcher::Config::default().labels(APP_LABEL);
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let (object, deleted) = match event {
            // The initial listing is state, not change: the regular reconcile compares it.
            Ok(watcher::Event::Apply(object)) => (object, false),
            Ok(watcher::Event::Delete(object)) => (object, true),
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(kind = %kind.kind, %error, "drift watch interrupted; retrying");
                continue;
            }
        };
        if let Some(app) = owner_if_foreign_change(&object, deleted, namespace.as_deref())
            && trigger.send(app).is_err()
        {
            return;
        }
    }
}

/// The owning app, when this event is someone else's change (the newest managedFields entry is not
/// Capstan's, or the object is going away) — Capstan's own applies do not wake the app again.
fn owner_if_foreign_change(
    object: &PartialObjectMeta<DynamicObject>,
    deleted: bool,
    namespace: Option<&str>,
) -> Option<ObjectRef<Application>> {
    let owner = object
        .metadata
        .annotations
        .as_ref()?
        .get(OWNER_ANNOTATION)?;
    let (app_namespace, app_name) = owner.split_once('/')?;
    if namespace.is_some_and(|ns| ns != app_namespace) {
        return None;
    }
    let deleted = deleted || object.metadata.deletion_timestamp.is_some();
    let entries = object
        .metadata
        .managed_fields
        .as_deref()
        .unwrap_or_default();
    let newest = entries.iter().filter_map(|e| e.time.as_ref()).max();
    let foreign = deleted
        || entries.iter().any(|entry| {
            entry.time.as_ref() == newest
                && entry.manager.as_deref() != Some(capstan_cluster::FIELD_MANAGER)
        });
    foreign.then(|| ObjectRef::new(app_name).within(app_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
    use k8s_openapi::jiff::Timestamp;

    fn object(entries: &[(&str, i64)]) -> PartialObjectMeta<DynamicObject> {
        let mut meta: PartialObjectMeta<DynamicObject> = serde_json::from_value(
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
        )
        .expect("metadata object");
        meta.metadata.annotations = Some(
            [(OWNER_ANNOTATION.to_string(), "apps/shop".to_string())]
                .into_iter()
                .collect(),
        );
        meta.metadata.managed_fields = Some(
            entries
                .iter()
                .map(|(manager, second)| ManagedFieldsEntry {
                    manager: Some(manager.to_string()),
                    time: Some(Time(Timestamp::from_second(*second).expect("time"))),
                    ..Default::default()
                })
                .collect(),
        );
        meta
    }

    #[test]
    fn only_foreign_changes_wake_the_owner() {
        let ours = object(&[("kubectl", 10), ("capstan", 20)]);
        assert!(owner_if_foreign_change(&ours, false, None).is_none());
        let theirs = object(&[("capstan", 10), ("kubectl-edit", 20)]);
        let app = owner_if_foreign_change(&theirs, false, None).expect("foreign change");
        assert_eq!(app.name, "shop");
        assert_eq!(app.namespace.as_deref(), Some("apps"));
        assert!(owner_if_foreign_change(&theirs, false, Some("other")).is_none());
        assert!(
            owner_if_foreign_change(&ours, true, None).is_some(),
            "deletes always wake"
        );
    }
}
