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

/// Managers (other than `own_manager`) whose `fieldsV1` in the live object covers `path`.
pub fn owners(live: &Value, path: &[Segment], own_manager: &str) -> Vec<String> {
    let mut managers = BTreeSet::new();
    let entries = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten();
    for entry in entries {
        let Some(manager) = entry.get("manager").and_then(Value::as_str) else {
            continue;
        };
        if manager == own_manager {
            continue;
        }
        if let Some(fields) = entry.get("fieldsV1").and_then(Value::as_object)
            && covers(fields, live, path)
        {
            managers.insert(manager.to_string());
        }
    }
    managers.into_iter().collect()
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
            let entry = item.and_then(|item| list_entry(fields, item, *index));
            (entry, item)
        }
    };
    match (child.and_then(Value::as_object), live_child) {
        (Some(child), Some(live_child)) => covers(child, live_child, rest),
        // A leaf set (`{}`) owns the whole value below it, e.g. an atomic map or list.
        (Some(child), None) => child.is_empty(),
        _ => false,
    }
}

fn list_entry<'a>(fields: &'a Map<String, Value>, item: &Value, index: usize) -> Option<&'a Value> {
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
        matched.then_some(value)
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
    fn unchanged_fields_are_not_drift() {
        let desired = json!({"spec": {"replicas": 5}});
        assert!(drift(&live(), &desired, "capstan").is_empty());
    }
}
