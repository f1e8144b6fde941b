//! What "the same object" means for a plan: the live object and the dry-run result are compared after
//! removing what the server changes on every write or owns outright.

use serde_json::{Map, Value};

/// Metadata the server rewrites on every write; never a difference worth showing.
const VOLATILE_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
];

/// The object as compared and shown in diffs: no status, no volatile metadata, no empty maps.
pub fn comparable(object: &Value) -> Value {
    let mut value = object.clone();
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
        if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for key in VOLATILE_METADATA {
                metadata.remove(*key);
            }
            for key in ["labels", "annotations"] {
                if metadata
                    .get(key)
                    .and_then(Value::as_object)
                    .is_some_and(Map::is_empty)
                {
                    metadata.remove(key);
                }
            }
        }
    }
    canonical(value)
}

/// Recursively sorts object keys, so that serialisation (and hashing) does not depend on the order
/// keys arrived in.
pub fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strips_status_and_volatile_metadata_only() {
        let live = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "resourceVersion": "7", "uid": "u", "generation": 2,
                          "managedFields": [{}], "creationTimestamp": "t", "labels": {},
                          "annotations": {"a": "b"}},
            "data": {"k": "v"}, "status": {"x": 1}
        });
        assert_eq!(
            comparable(&live),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c", "annotations": {"a": "b"}}, "data": {"k": "v"}})
        );
    }
}
