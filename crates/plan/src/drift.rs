//! Which fields differ between the live object and what Git wants, and which field managers own them in
//! the live object (from `metadata.managedFields`), so a plan can say who changed a field before Git
//! takes it back.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A field that Git sets to another value than the live object has, with the live owners of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldDrift {
    /// `.spec.replicas`, `.spec.template.spec.containers[0].image`
    pub path: String,
    /// Field managers (other than Capstan) that own the live value.
    pub managers: Vec<String>,
}

pub fn render_path(path: &[Segment]) -> String {
    let mut text = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                text.push('.');
                text.push_str(key);
            }
            Segment::Index(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
}

impl fmt::Display for FieldDrift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (changed by {})", self.path, self.managers.join(", "))
    }
}

/// Leaf paths where `live` has a value that `desired` changes (fields only Git adds are not drift).
pub fn changed_paths(live: &Value, desired: &Value) -> Vec<Vec<Segment>> {
    let mut out = Vec::new();
    walk(live, desired, &mut Vec::new(), &mut out);
    out
}

fn walk(live: &Value, desired: &Value, path: &mut Vec<Segment>, out: &mut Vec<Vec<Segment>>) {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => {
            for (key, dv) in d {
                if let Some(lv) = l.get(key) {
                    path.push(Segment::Key(key.clone()));
                    walk(lv, dv, path, out);
                    path.pop();
                }
            }
        }
        (Value::Array(l), Value::Array(d)) if l.len() == d.len() => {
            for (index, (lv, dv)) in l.iter().zip(d).enumerate() {
                path.push(Segment::Index(index));
                walk(lv, dv, path, out);
                path.pop();
            }
        }
        (l, d) if l != d => out.push(path.clone()),
        _ => {}
    }
}

/// (manager, fieldsV1) of every `managedFields` entry of the live object; one manager can have several
/// (an Apply and an Update, a subresource).
fn field_sets(live: &Value) -> impl Iterator<Item = (&str, &Map<String, Value>)> {
    live.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            Some((
                entry.get("manager")?.as_str()?,
                entry.get("fieldsV1")?.as_object()?,
            ))
        })
}

/// Managers (other than `own_manager`) whose `fieldsV1` in the live object covers `path`.
pub fn owners(live: &Value, path: &[Segment], own_manager: &str) -> Vec<String> {
    let mut managers = BTreeSet::new();
    for (manager, fields) in field_sets(live) {
        if manager != own_manager && covers(fields, live, path) {
            managers.insert(manager.to_string());
        }
    }
    managers.into_iter().collect()
}

/// Whether `manager` owns, in the live object, the field at `path` or anything below it.
pub fn owned_by(live: &Value, path: &[Segment], manager: &str) -> bool {
    field_sets(live).any(|(m, fields)| m == manager && covers(fields, live, path))
}

/// The fields `manager` owns in the live object, as paths into `target` (the live object itself, or
/// another version of it: list items are matched by their keys, not their position). A path ends where
/// the manager owns the whole value (a leaf of its field set); the key fields of list items are never
/// listed, since an item cannot be named without them.
pub fn owned_paths(live: &Value, manager: &str, target: &Value) -> Vec<Vec<Segment>> {
    let mut out = Vec::new();
    for (m, fields) in field_sets(live) {
        if m == manager {
            collect_owned(fields, target, &[], &mut Vec::new(), &mut out);
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Walks a field set alongside `target`; `key_fields` are the fields naming the list item `target` is
/// (from its `k:` entry), which stay.
fn collect_owned(
    fields: &Map<String, Value>,
    target: &Value,
    key_fields: &[String],
    path: &mut Vec<Segment>,
    out: &mut Vec<Vec<Segment>>,
) {
    let mut visit = |child_fields: &Map<String, Value>,
                     child: &Value,
                     child_keys: &[String],
                     segment: Segment,
                     out: &mut Vec<Vec<Segment>>| {
        path.push(segment);
        if child_fields.is_empty() {
            out.push(path.clone());
        } else {
            collect_owned(child_fields, child, child_keys, path, out);
        }
        path.pop();
    };
    match target {
        Value::Object(map) => {
            for (key, child_fields) in fields {
                let Some(name) = key.strip_prefix("f:") else {
                    continue;
                };
                if key_fields.iter().any(|k| k == name) {
                    continue;
                }
                if let (Some(child), Some(child_fields)) = (map.get(name), child_fields.as_object())
                {
                    visit(
                        child_fields,
                        child,
                        &[],
                        Segment::Key(name.to_string()),
                        out,
                    );
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let Some((key, child_fields)) = list_entry(fields, item, index) else {
                    continue;
                };
                let Some(child_fields) = child_fields.as_object() else {
                    continue;
                };
                let child_keys: Vec<String> = key
                    .strip_prefix("k:")
                    .and_then(|keys| serde_json::from_str::<Map<String, Value>>(keys).ok())
                    .map(|keys| keys.keys().cloned().collect())
                    .unwrap_or_default();
                visit(child_fields, item, &child_keys, Segment::Index(index), out);
            }
        }
        _ => {}
    }
}

/// Follows `path` through a fieldsV1 set (`f:<field>`, `k:{<key fields>}`, `v:<value>`, `i:<index>`)
/// alongside the live object, whose list items tell which `k:`/`v:` entry an index means.
fn covers(fields: &Map<String, Value>, live: &Value, path: &[Segment]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return true;
    };
    let (child, live_child) = match first {
        Segment::Key(key) => (fields.get(&format!("f:{key}")), live.get(key)),
        Segment::Index(index) => {
            let item = live.get(index);
            let entry = item.and_then(|item| list_entry(fields, item, *index).map(|(_, v)| v));
            (entry, item)
        }
    };
    match (child.and_then(Value::as_object), live_child) {
        // A leaf set (`{}`) owns the whole value below it, e.g. an atomic map or list.
        (Some(child), _) if child.is_empty() => true,
        (Some(child), Some(live_child)) => covers(child, live_child, rest),
        _ => false,
    }
}

/// The entry (`k:`, `v:` or `i:` key and its field set) of a list's field set that names `item`.
fn list_entry<'a>(
    fields: &'a Map<String, Value>,
    item: &Value,
    index: usize,
) -> Option<(&'a str, &'a Value)> {
    fields.iter().find_map(|(key, value)| {
        let matched = if let Some(keys) = key.strip_prefix("k:") {
            serde_json::from_str::<Map<String, Value>>(keys)
                .is_ok_and(|keys| keys.iter().all(|(k, v)| item.get(k) == Some(v)))
        } else if let Some(set_value) = key.strip_prefix("v:") {
            serde_json::from_str::<Value>(set_value).is_ok_and(|v| &v == item)
        } else if let Some(i) = key.strip_prefix("i:") {
            i.parse::<usize>() == Ok(index)
        } else {
            false
        };
        matched.then_some((key.as_str(), value))
    })
}

/// Every changed field with its live owners; fields owned by nobody else are still listed (a
/// defaulted value Git now sets), with no managers.
pub fn drift(live: &Value, desired: &Value, own_manager: &str) -> Vec<FieldDrift> {
    changed_paths(live, desired)
        .into_iter()
        .map(|path| FieldDrift {
            managers: owners(live, &path, own_manager),
            path: render_path(&path),
        })
        .filter(|d| !d.managers.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live() -> Value {
        json!({
            "metadata": {"managedFields": [
                {"manager": "capstan", "operation": "Apply", "fieldsV1": {
                    "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                        "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}}},
                {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {
                    "f:spec": {"f:template": {"f:spec": {"f:containers": {
                        "k:{\"name\":\"web\"}": {"f:image": {}}}}}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale",
                 "fieldsV1": {"f:spec": {"f:replicas": {}}}}
            ]},
            "spec": {"replicas": 5, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:edited"}]}}}
        })
    }

    #[test]
    fn names_the_managers_of_changed_fields() {
        let desired = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "web", "image": "nginx:1.27"}]}}}});
        let found = drift(&live(), &desired, "capstan");
        assert_eq!(
            found,
            vec![
                FieldDrift {
                    path: ".spec.replicas".into(),
                    managers: vec!["kube-controller-manager".into()]
                },
                FieldDrift {
                    path: ".spec.template.spec.containers[0].image".into(),
                    managers: vec!["kubectl-edit".into()]
                },
            ]
        );
    }

    #[test]
    fn a_leaf_set_owns_everything_below_it() {
        // `args` is an atomic list: its owner owns every item.
        let live = json!({
            "metadata": {"managedFields": [{"manager": "kubectl-edit", "fieldsV1": {
                "f:spec": {"f:args": {}}}}]},
            "spec": {"args": ["a", "edited"]}
        });
        let desired = json!({"spec": {"args": ["a", "b"]}});
        assert_eq!(
            drift(&live, &desired, "capstan"),
            vec![FieldDrift {
                path: ".spec.args[1]".into(),
                managers: vec!["kubectl-edit".into()]
            }]
        );
        assert!(owned_by(
            &live,
            &[Segment::Key("spec".into())],
            "kubectl-edit"
        ));
        assert!(!owned_by(&live, &[Segment::Key("spec".into())], "capstan"));
    }

    #[test]
    fn owned_paths_follow_list_items_by_key_and_keep_key_fields() {
        let key = |k: &str| Segment::Key(k.into());
        // In Git's object the container the editor changed comes second.
        let desired = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "sidecar", "image": "envoy"},
            {"name": "web", "image": "nginx:1.27"}]}}}});
        assert_eq!(
            owned_paths(&live(), "kubectl-edit", &desired),
            vec![vec![
                key("spec"),
                key("template"),
                key("spec"),
                key("containers"),
                Segment::Index(1),
                key("image")
            ]]
        );
        // Capstan's own item: `.` and the key field `name` are not fields to take away.
        let own = owned_paths(&live(), "capstan", &live());
        assert!(
            own.iter()
                .all(|p| p.last() != Some(&key("name")) && p.last() != Some(&key("."))),
            "{own:?}"
        );
        assert!(own.contains(&vec![key("spec"), key("replicas")]), "{own:?}");
        assert_eq!(
            owned_paths(&live(), "kube-controller-manager", &live()),
            vec![vec![key("spec"), key("replicas")]]
        );
        assert!(owned_paths(&live(), "nobody", &live()).is_empty());
    }

    #[test]
    fn unchanged_fields_are_not_drift() {
        let desired = json!({"spec": {"replicas": 5}});
        assert!(drift(&live(), &desired, "capstan").is_empty());
    }
}
