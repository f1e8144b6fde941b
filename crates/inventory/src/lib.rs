//! An app's inventory: every object Capstan applied for it (group, version, kind, namespace, name),
//! kept in the destination cluster so the CLI and the controller share it.
//!
//! [`Inventory`] is the pure set; [`store`] reads and writes it through the [`ConfigMaps`] trait,
//! which `capstan-cluster` implements.
//! Prune candidates are `previous inventory − desired objects`, and prune itself still checks the
//! ownership mark on the live object before deleting.

#[cfg(test)]
mod fake;
pub mod store;

use std::collections::BTreeMap;

use capstan_core::ObjectRef;

pub use store::{ConfigMaps, InventoryError, InventoryStore, Stored};

/// Objects are the same object across API versions: the key leaves the version out.
type Key = (String, String, Option<String>, String);

fn key(object: &ObjectRef) -> Key {
    (
        object.group.clone(),
        object.kind.clone(),
        object.namespace.clone(),
        object.name.clone(),
    )
}

/// A set of objects keyed by group, kind, namespace and name; the version is the last one applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    objects: BTreeMap<Key, ObjectRef>,
}

impl Inventory {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub fn contains(&self, object: &ObjectRef) -> bool {
        self.objects.contains_key(&key(object))
    }

    /// Adds or updates (a newer version replaces the recorded one).
    pub fn insert(&mut self, object: ObjectRef) {
        self.objects.insert(key(&object), object);
    }

    pub fn remove(&mut self, object: &ObjectRef) {
        self.objects.remove(&key(object));
    }

    pub fn iter(&self) -> impl Iterator<Item = &ObjectRef> {
        self.objects.values()
    }

    /// Everything in `self` or in `other`; `other`'s versions win. Written before an apply, so a crash
    /// mid-apply never loses track of an object.
    pub fn union(&self, other: &Inventory) -> Inventory {
        let mut merged = self.clone();
        for object in other.iter() {
            merged.insert(object.clone());
        }
        merged
    }

    /// What `self` holds and `desired` does not: the prune candidates.
    pub fn missing_from(&self, desired: &Inventory) -> Vec<ObjectRef> {
        self.iter()
            .filter(|object| !desired.contains(object))
            .cloned()
            .collect()
    }

    /// One line per object, `<apiVersion> <kind> <namespace or _> <name>`, sorted. None of these fields
    /// can hold a space, and `_` is not a valid namespace name.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(self.objects.len() * 64);
        for object in self.iter() {
            text.push_str(&object.api_version());
            text.push(' ');
            text.push_str(&object.kind);
            text.push(' ');
            text.push_str(object.namespace.as_deref().unwrap_or("_"));
            text.push(' ');
            text.push_str(&object.name);
            text.push('\n');
        }
        text
    }

    /// Parses [`Inventory::encode`]'s format; `line` numbers in errors are 1-based.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let mut inventory = Inventory::new();
        for (index, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(' ').collect();
            let [api_version, kind, namespace, name] = fields[..] else {
                return Err(DecodeError {
                    line: index + 1,
                    text: line.to_string(),
                });
            };
            let (group, version) = capstan_core::split_api_version(api_version);
            inventory.insert(ObjectRef {
                group: group.to_string(),
                version: version.to_string(),
                kind: kind.to_string(),
                namespace: (namespace != "_").then(|| namespace.to_string()),
                name: name.to_string(),
            });
        }
        Ok(inventory)
    }
}

impl FromIterator<ObjectRef> for Inventory {
    fn from_iter<I: IntoIterator<Item = ObjectRef>>(iter: I) -> Self {
        let mut inventory = Inventory::new();
        for object in iter {
            inventory.insert(object);
        }
        inventory
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("inventory line {line} is not `<apiVersion> <kind> <namespace> <name>`: {text:?}")]
pub struct DecodeError {
    pub line: usize,
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> ObjectRef {
        let (group, version) = capstan_core::split_api_version(api_version);
        ObjectRef {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            namespace: namespace.map(Into::into),
            name: name.into(),
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let inventory: Inventory = [
            object("apps/v1", "Deployment", Some("shop"), "web"),
            object("v1", "Namespace", None, "shop"),
            object("example.com/v1beta1", "Widget", Some("shop"), "w-1"),
        ]
        .into_iter()
        .collect();
        let text = inventory.encode();
        assert!(text.contains("v1 Namespace _ shop\n"), "{text}");
        assert_eq!(Inventory::decode(&text).expect("decode"), inventory);
    }

    #[test]
    fn versions_do_not_make_new_objects() {
        let mut inventory = Inventory::new();
        inventory.insert(object(
            "autoscaling/v1",
            "HorizontalPodAutoscaler",
            Some("a"),
            "h",
        ));
        inventory.insert(object(
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            Some("a"),
            "h",
        ));
        assert_eq!(inventory.len(), 1);
        assert_eq!(
            inventory.iter().next().map(|o| o.version.as_str()),
            Some("v2")
        );
    }

    #[test]
    fn prune_candidates_are_previous_minus_desired() {
        let previous: Inventory = [
            object("v1", "ConfigMap", Some("a"), "keep"),
            object("v1", "ConfigMap", Some("a"), "gone"),
        ]
        .into_iter()
        .collect();
        let desired: Inventory = [
            object("v1", "ConfigMap", Some("a"), "keep"),
            object("v1", "ConfigMap", Some("a"), "new"),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            previous.missing_from(&desired),
            vec![object("v1", "ConfigMap", Some("a"), "gone")]
        );
        assert_eq!(previous.union(&desired).len(), 3);
    }

    #[test]
    fn malformed_lines_are_named() {
        let err = Inventory::decode("v1 ConfigMap a x\nbroken line\n").expect_err("bad");
        assert_eq!(err.line, 2);
    }
}
