//! Proof, from the live object alone, that applying a desired object would change nothing: such an
//! object needs no server-side dry-run.
//!
//! A server-side apply by manager `capstan` changes nothing when
//! 1. every value the desired object sets is already the live value, and
//! 2. `capstan`'s Apply entry in managedFields owns exactly the fields the desired object sets,
//!
//! because then the merge sets nothing new and removes nothing `capstan` owned. Drift cannot hide
//! from (2): the API server takes a field out of `capstan`'s set whenever another writer changes its
//! value (an update, `kubectl scale`, a forced apply) or removes it, whatever the writer.
//!
//! The proof is conservative. Whatever it cannot establish exactly falls back to the dry-run: a value
//! the server normalised (quantities, defaults inside an atomic map or list), a list whose items
//! cannot be matched one to one, nulls, another API version, an object being deleted. Top-level
//! `status` is skipped: the dry-run comparison drops it too, so it never makes a change either way.

use base64::Engine as _;
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Whether applying `desired` (the object exactly as a sync would send it) as `manager` to `live`
/// provably changes nothing. `false` means "not proven", never "changed".
pub fn proven(desired: &Value, live: &Value, manager: &str) -> bool {
    let (Some(desired), Some(live)) = (desired.as_object(), live.as_object()) else {
        return false;
    };
    let Some(owned) = apply_entry(live, manager, desired.get("apiVersion")) else {
        return false;
    };
    if desired.get("kind") != live.get("kind") || live_meta(live, "deletionTimestamp").is_some() {
        return false;
    }
    let secret = desired.get("apiVersion") == Some(&Value::from("v1"))
        && desired.get("kind") == Some(&Value::from("Secret"));
    let mut expected = 0;
    for (key, value) in desired {
        let matched = match key.as_str() {
            // Identity, not fields: the entry's apiVersion and the kind were compared above.
            "apiVersion" | "kind" => continue,
            // The plan never compares status (`normalize::comparable` drops it, and an apply to a
            // kind with a status subresource ignores it): it neither proves nor disproves anything.
            "status" => true,
            "metadata" => metadata_matches(value, live.get("metadata"), owned.get("f:metadata")),
            "stringData" if secret => string_data_matches(desired, live, value, owned),
            _ => field_same(value, live.get(key), owned_child(owned, key)),
        };
        if !matched {
            return false;
        }
        // metadata always has a name, but only owned labels, annotations, … make an f:metadata;
        // status is owned only where the kind has no status subresource.
        if !matches!(key.as_str(), "metadata" | "status") || owned.contains_key(&format!("f:{key}"))
        {
            expected += 1;
        }
    }
    children(owned) == expected
}

/// The `fieldsV1` of `manager`'s one Apply entry on the main resource, made at `api_version`.
fn apply_entry<'a>(
    live: &'a Map<String, Value>,
    manager: &str,
    api_version: Option<&Value>,
) -> Option<&'a Map<String, Value>> {
    let entries = live_meta(live, "managedFields")?.as_array()?;
    let mut ours = entries.iter().filter(|entry| {
        entry.get("manager").and_then(Value::as_str) == Some(manager)
            && entry.get("operation").and_then(Value::as_str) == Some("Apply")
            && entry
                .get("subresource")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
    });
    let entry = ours.next()?;
    if ours.next().is_some() || entry.get("apiVersion") != api_version {
        return None;
    }
    entry.get("fieldsV1")?.as_object()
}

fn live_meta<'a>(live: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    live.get("metadata")?.get(key).filter(|v| !v.is_null())
}

/// `metadata`: name and namespace must be the live ones (they are identity and never in
/// managedFields); everything else (labels, annotations, …) is an ordinary owned field.
fn metadata_matches(desired: &Value, live: Option<&Value>, owned: Option<&Value>) -> bool {
    let (Some(desired), Some(live)) = (desired.as_object(), live.and_then(Value::as_object)) else {
        return false;
    };
    let empty = Map::new();
    let owned = match owned {
        Some(node) => match node.as_object() {
            Some(node) => node,
            None => return false,
        },
        None => &empty,
    };
    let mut expected = 0;
    for (key, value) in desired {
        if key == "name" || key == "namespace" {
            if live.get(key) != Some(value) {
                return false;
            }
            continue;
        }
        if !field_same(value, live.get(key), owned_child(owned, key)) {
            return false;
        }
        expected += 1;
    }
    children(owned) == expected
}

/// A Secret's `stringData` is write-only: the server stores each key base64-encoded in `data` and
/// keeps only the ownership of `stringData`. Unchanged when every key is owned and already stored.
fn string_data_matches(
    desired: &Map<String, Value>,
    live: &Map<String, Value>,
    string_data: &Value,
    owned: &Map<String, Value>,
) -> bool {
    let (Some(string_data), Some(node)) =
        (string_data.as_object(), owned_child(owned, "stringData"))
    else {
        return false;
    };
    let declared_data = desired.get("data").and_then(Value::as_object);
    let live_data = live.get("data").and_then(Value::as_object);
    live.get("stringData").is_none()
        && children(node) == string_data.len()
        && string_data.iter().all(|(key, value)| {
            let (Some(text), Some(leaf)) = (value.as_str(), owned_child(node, key)) else {
                return false;
            };
            // Both `data` and `stringData` naming a key: the server's merge decides; dry-run it.
            let stored = live_data
                .and_then(|data| data.get(key))
                .and_then(Value::as_str);
            children(leaf) == 0
                && declared_data.is_none_or(|data| !data.contains_key(key))
                && stored
                    == Some(
                        base64::engine::general_purpose::STANDARD
                            .encode(text)
                            .as_str(),
                    )
        })
}

/// One field of a map: `desired` is already `live` (the stored value, if any), and `owned` covers it.
fn field_same(desired: &Value, live: Option<&Value>, owned: Option<&Map<String, Value>>) -> bool {
    match (live, owned) {
        (Some(live), Some(owned)) => same(desired, live, owned),
        // The server stores no empty map or list (`data: {}`, `args: []`): applying one again stores
        // nothing either.
        (None, Some(owned)) => {
            children(owned) == 0
                && match desired {
                    Value::Object(map) => map.is_empty(),
                    Value::Array(items) => items.is_empty(),
                    _ => false,
                }
        }
        _ => false,
    }
}

/// `desired` is already `live`, and `owned` (a fieldsV1 node) covers exactly what `desired` sets.
fn same(desired: &Value, live: &Value, owned: &Map<String, Value>) -> bool {
    // A node without children is owned as a whole: a scalar, an atomic map or list, or an empty one.
    if children(owned) == 0 {
        return !desired.is_null() && desired == live && !contains_null(desired);
    }
    match (desired, live) {
        (Value::Object(desired), Value::Object(live)) => {
            children(owned) == desired.len()
                && desired
                    .iter()
                    .all(|(key, value)| field_same(value, live.get(key), owned_child(owned, key)))
        }
        // Items are matched by position and must be the live items in the same order: SSA keeps
        // the applied order, so a reordered list would change.
        (Value::Array(desired), Value::Array(live)) => {
            if desired.len() != live.len() || children(owned) != desired.len() {
                return false;
            }
            // Parsed once per list, not once per item.
            let Some(items) = owned
                .iter()
                .filter(|(key, _)| *key != ".")
                .map(|(key, node)| Some((ItemKey::parse(key)?, node.as_object()?)))
                .collect::<Option<Vec<_>>>()
            else {
                return false;
            };
            let mut used = HashSet::new();
            desired
                .iter()
                .zip(live)
                .enumerate()
                .all(|(index, (item, live_item))| {
                    let mut matching = items
                        .iter()
                        .enumerate()
                        .filter(|(_, (key, _))| key.matches(index, live_item));
                    let (Some((position, (key, node))), None) = (matching.next(), matching.next())
                    else {
                        return false;
                    };
                    used.insert(position)
                        && match key {
                            ItemKey::Value(_) => item == live_item && children(node) == 0,
                            ItemKey::Fields(_) | ItemKey::Index(_) => same(item, live_item, node),
                        }
                })
        }
        _ => false,
    }
}

/// How fieldsV1 names an item of a granular list: `k:` by its key fields (as the server stored them,
/// defaults included), `v:` by value, `i:` by position.
enum ItemKey {
    Fields(Map<String, Value>),
    Value(Value),
    Index(usize),
}

impl ItemKey {
    fn parse(key: &str) -> Option<Self> {
        if let Some(fields) = key.strip_prefix("k:") {
            serde_json::from_str::<Map<String, Value>>(fields)
                .ok()
                .filter(|fields| !fields.is_empty())
                .map(Self::Fields)
        } else if let Some(value) = key.strip_prefix("v:") {
            serde_json::from_str(value).ok().map(Self::Value)
        } else {
            key.strip_prefix("i:")?.parse().ok().map(Self::Index)
        }
    }

    /// Whether this key stands for `live_item`, the `index`-th item of the live list.
    fn matches(&self, index: usize, live_item: &Value) -> bool {
        match self {
            Self::Fields(fields) => fields
                .iter()
                .all(|(field, value)| live_item.get(field) == Some(value)),
            Self::Value(value) => value == live_item,
            Self::Index(position) => *position == index,
        }
    }
}

fn owned_child<'a>(owned: &'a Map<String, Value>, field: &str) -> Option<&'a Map<String, Value>> {
    owned.get(&format!("f:{field}"))?.as_object()
}

/// Children of a fieldsV1 node; `.` marks the node itself as owned and is not a child.
fn children(owned: &Map<String, Value>) -> usize {
    owned.keys().filter(|key| *key != ".").count()
}

/// A null inside an applied value removes a field; leave that to the dry-run.
fn contains_null(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.values().any(contains_null),
        Value::Array(items) => items.iter().any(contains_null),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MARK: &str = "capstan.dev/app";

    fn entry(fields: Value) -> Value {
        json!({"apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": fields,
               "manager": "capstan", "operation": "Apply", "time": "2026-11-26T22:51:25Z"})
    }

    fn service_desired() -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "shop", "labels": {MARK: "shop"}},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    }

    /// As the API server stores `service_desired()` after capstan applied it.
    fn service_live() -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "shop", "labels": {MARK: "shop"},
                            "resourceVersion": "7", "uid": "u",
                            "managedFields": [entry(json!({
                                "f:metadata": {"f:labels": {format!("f:{MARK}"): {}}},
                                "f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}":
                                              {".": {}, "f:port": {}, "f:targetPort": {}}},
                                           "f:selector": {}}}))]},
               "spec": {"clusterIP": "10.96.0.10", "type": "ClusterIP",
                        "selector": {"app": "web"},
                        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]},
               "status": {"loadBalancer": {}}})
    }

    #[test]
    fn an_applied_service_with_server_defaults_is_proven_unchanged() {
        assert!(proven(&service_desired(), &service_live(), "capstan"));
    }

    #[test]
    fn a_changed_value_is_not_proven() {
        let mut desired = service_desired();
        desired["spec"]["ports"][0]["targetPort"] = json!(9090);
        assert!(!proven(&desired, &service_live(), "capstan"));
        let mut desired = service_desired();
        desired["spec"]["selector"]["app"] = json!("api");
        assert!(!proven(&desired, &service_live(), "capstan"), "atomic map");
    }

    #[test]
    fn a_field_left_out_of_git_or_added_to_it_is_not_proven() {
        let mut removed = service_desired();
        removed["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("selector");
        assert!(!proven(&removed, &service_live(), "capstan"));
        let mut added = service_desired();
        added["spec"]["type"] = json!("ClusterIP");
        assert!(
            !proven(&added, &service_live(), "capstan"),
            "same value, not owned yet"
        );
    }

    #[test]
    fn a_field_another_manager_took_is_not_proven() {
        let mut live = service_live();
        // kubectl edit of targetPort: the server moves the field to the editor's entry.
        live["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:ports"]
            ["k:{\"port\":80,\"protocol\":\"TCP\"}"]
            .as_object_mut()
            .expect("port item")
            .remove("f:targetPort");
        assert!(!proven(&service_desired(), &live, "capstan"));
    }

    #[test]
    fn other_entries_versions_and_deletion_matter() {
        assert!(!proven(&service_desired(), &service_live(), "someone-else"));
        let mut other_version = service_live();
        other_version["metadata"]["managedFields"][0]["apiVersion"] = json!("v2");
        assert!(!proven(&service_desired(), &other_version, "capstan"));
        let mut deleting = service_live();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-11-26T23:00:00Z");
        assert!(!proven(&service_desired(), &deleting, "capstan"));
        let mut renamed = service_desired();
        renamed["metadata"]["name"] = json!("api");
        assert!(!proven(&renamed, &service_live(), "capstan"));
    }

    #[test]
    fn list_items_must_match_one_to_one_and_in_order() {
        let mut desired = service_desired();
        desired["spec"]["ports"] = json!([{"port": 80, "targetPort": 8080}, {"port": 443}]);
        let mut live = service_live();
        live["spec"]["ports"] = json!([
            {"port": 80, "protocol": "TCP", "targetPort": 8080},
            {"port": 443, "protocol": "TCP", "targetPort": 443}
        ]);
        live["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:ports"] = json!({
            "k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}, "f:targetPort": {}},
            "k:{\"port\":443,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}
        });
        assert!(proven(&desired, &live, "capstan"));
        let mut reordered = desired.clone();
        reordered["spec"]["ports"] = json!([{"port": 443}, {"port": 80, "targetPort": 8080}]);
        assert!(!proven(&reordered, &live, "capstan"));
        let mut extra = live.clone();
        extra["spec"]["ports"]
            .as_array_mut()
            .expect("ports")
            .push(json!({"port": 8443, "protocol": "TCP"}));
        assert!(
            !proven(&desired, &extra, "capstan"),
            "an item another manager added"
        );
    }

    #[test]
    fn secret_string_data_is_compared_with_the_stored_data() {
        let desired = json!({"apiVersion": "v1", "kind": "Secret",
                             "metadata": {"name": "s", "namespace": "shop"},
                             "stringData": {"token": "hunter2"}});
        let live = |stored: &str| {
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                   "metadata": {"name": "s", "namespace": "shop",
                                "managedFields": [entry(json!({"f:stringData": {"f:token": {}}}))]},
                   "data": {"token": stored}})
        };
        assert!(proven(&desired, &live("aHVudGVyMg=="), "capstan"));
        assert!(!proven(&desired, &live("b3RoZXI="), "capstan"));
    }

    #[test]
    fn nulls_are_left_to_the_dry_run() {
        let mut desired = service_desired();
        desired["spec"]["selector"] = json!({"app": null});
        assert!(!proven(&desired, &service_live(), "capstan"));
    }

    #[test]
    fn status_is_not_compared_as_in_the_dry_run_comparison() {
        // `kubectl create --dry-run=client -o yaml` writes `status: {}`.
        let mut desired = service_desired();
        desired["status"] = json!({});
        assert!(proven(&desired, &service_live(), "capstan"));
        // A kind without a status subresource: capstan owns the status it applied.
        let mut live = service_live();
        live["metadata"]["managedFields"][0]["fieldsV1"]["f:status"] = json!({});
        assert!(proven(&desired, &live, "capstan"));
        assert!(
            !proven(&service_desired(), &live, "capstan"),
            "Git no longer sets the status capstan owns"
        );
    }

    #[test]
    fn an_empty_map_the_server_did_not_store_is_unchanged() {
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "c", "namespace": "shop"}, "data": {}});
        let live = |data: Option<Value>| {
            let mut live = json!({"apiVersion": "v1", "kind": "ConfigMap",
                                  "metadata": {"name": "c", "namespace": "shop",
                                               "managedFields": [entry(json!({"f:data": {}}))]}});
            if let Some(data) = data {
                live["data"] = data;
            }
            live
        };
        assert!(proven(&desired, &live(None), "capstan"));
        assert!(proven(&desired, &live(Some(json!({}))), "capstan"));
        assert!(
            !proven(&desired, &live(Some(json!({"k": "v"}))), "capstan"),
            "not empty: set by someone, or Git emptied an atomic map"
        );
        let mut not_empty = desired.clone();
        not_empty["data"] = json!({"k": "v"});
        assert!(!proven(&not_empty, &live(None), "capstan"));
    }

    #[test]
    fn set_items_match_by_value() {
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "c", "namespace": "shop",
                                          "finalizers": ["example.com/keep"]}});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": "c", "namespace": "shop",
                                       "finalizers": ["example.com/keep"],
                                       "managedFields": [entry(json!({"f:metadata":
                                           {"f:finalizers": {".": {}, "v:\"example.com/keep\"": {}}}}))]}});
        assert!(proven(&desired, &live, "capstan"));
    }
}
