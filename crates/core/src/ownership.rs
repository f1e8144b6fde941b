//! The ownership mark: the one place that decides how Capstan labels and annotates what it applies for
//! an app, and how it recognises its own objects before pruning them.
//!
//! The label (`capstan.dev/app`) is for selection and `kubectl get -l`; label values are limited to 63
//! characters, so it holds the app name only when it fits. The annotation (`capstan.dev/owner`) holds the
//! full identity `<app namespace>/<app name>` and is what prune trusts.

use std::collections::BTreeMap;

use kube::api::DynamicObject;

pub const APP_LABEL: &str = "capstan.dev/app";
pub const OWNER_ANNOTATION: &str = "capstan.dev/owner";

/// An app's identity: the namespace its inventory lives in and its name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AppId {
    pub namespace: String,
    pub name: String,
}

impl AppId {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    fn owner_value(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The label value: the app name when it is a valid label value, else a stable hash of the owner.
    pub fn label_value(&self) -> String {
        let valid = self.name.len() <= 63
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && self.name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && self.name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if valid {
            self.name.clone()
        } else {
            // FNV-1a: stable across builds and platforms, unlike std's hasher.
            let hash = self
                .owner_value()
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
            format!("h-{hash:016x}")
        }
    }
}

impl std::fmt::Display for AppId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.owner_value())
    }
}

/// Marks `object` as applied by Capstan for `app`. Every object Capstan applies passes through here.
pub fn mark(object: &mut DynamicObject, app: &AppId) {
    object
        .metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(APP_LABEL.into(), app.label_value());
    object
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(OWNER_ANNOTATION.into(), app.owner_value());
}

/// Whether a live object carries `app`'s mark. Prune asks this before deleting anything.
pub fn is_owned_by(object: &DynamicObject, app: &AppId) -> bool {
    object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OWNER_ANNOTATION))
        .is_some_and(|owner| *owner == app.owner_value())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_map() -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "labels": {"team": "a"}}
        }))
        .expect("object")
    }

    #[test]
    fn marked_object_is_owned_by_its_app_only() {
        let app = AppId::new("capstan", "shop");
        let mut object = config_map();
        assert!(!is_owned_by(&object, &app));
        mark(&mut object, &app);
        assert!(is_owned_by(&object, &app));
        assert!(!is_owned_by(&object, &AppId::new("capstan", "shop2")));
        assert!(!is_owned_by(&object, &AppId::new("other", "shop")));
        let labels = object.metadata.labels.as_ref().expect("labels");
        assert_eq!(
            labels.get("team").map(String::as_str),
            Some("a"),
            "keeps labels"
        );
        assert_eq!(labels.get(APP_LABEL).map(String::as_str), Some("shop"));
    }

    #[test]
    fn long_app_names_get_a_stable_valid_label() {
        let app = AppId::new("ns", "x".repeat(80));
        let mut object = config_map();
        mark(&mut object, &app);
        let label = object.metadata.labels.as_ref().expect("labels")[APP_LABEL].clone();
        assert!(label.len() <= 63 && label.starts_with("h-"), "{label}");
        let mut again = config_map();
        mark(&mut again, &app);
        assert_eq!(
            again.metadata.labels.as_ref().expect("labels")[APP_LABEL],
            label
        );
    }
}
