//! Reading fields of a `DynamicObject` without trusting their shape.
//!
//! Objects come from the cluster, but custom resources can put anything anywhere: every accessor
//! returns `None` for a missing field and for a field of the wrong type, so no rule can panic.

use kube::api::DynamicObject;
use serde_json::Value;

/// (group, kind) of the object; empty strings when `types` is missing.
pub(crate) fn group_kind(object: &DynamicObject) -> (&str, &str) {
    match &object.types {
        Some(types) => {
            let group = types
                .api_version
                .rsplit_once('/')
                .map_or("", |(group, _)| group);
            (group, types.kind.as_str())
        }
        None => ("", ""),
    }
}

/// The kind, for messages; "Resource" when unknown.
pub(crate) fn kind(object: &DynamicObject) -> &str {
    match group_kind(object).1 {
        "" => "Resource",
        kind => kind,
    }
}

pub(crate) fn get<'a>(object: &'a DynamicObject, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(&object.data, |value, key| value.as_object()?.get(*key))
}

pub(crate) fn int(object: &DynamicObject, path: &[&str]) -> Option<i64> {
    get(object, path)?.as_i64()
}

pub(crate) fn string<'a>(object: &'a DynamicObject, path: &[&str]) -> Option<&'a str> {
    get(object, path)?.as_str()
}

pub(crate) fn list<'a>(object: &'a DynamicObject, path: &[&str]) -> &'a [Value] {
    get(object, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// One entry of `status.conditions`, the shape shared by core types and most custom resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Condition<'a> {
    pub type_: &'a str,
    pub status: &'a str,
    pub reason: &'a str,
    pub message: &'a str,
}

impl Condition<'_> {
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
    pub fn is_false(&self) -> bool {
        self.status == "False"
    }

    /// "reason: message", or whichever of the two is set.
    pub fn explanation(&self) -> String {
        match (self.reason, self.message) {
            ("", "") => String::new(),
            (reason, "") => reason.to_string(),
            ("", message) => message.to_string(),
            (reason, message) => format!("{reason}: {message}"),
        }
    }
}

/// `status.conditions`, skipping entries without a type.
pub(crate) fn conditions(object: &DynamicObject) -> Vec<Condition<'_>> {
    list(object, &["status", "conditions"])
        .iter()
        .filter_map(|c| {
            let field = |name: &str| c.get(name).and_then(Value::as_str).unwrap_or_default();
            let type_ = field("type");
            (!type_.is_empty()).then(|| Condition {
                type_,
                status: field("status"),
                reason: field("reason"),
                message: field("message"),
            })
        })
        .collect()
}

pub(crate) fn condition<'a>(object: &'a DynamicObject, type_: &str) -> Option<Condition<'a>> {
    conditions(object).into_iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
pub(crate) fn object(value: serde_json::Value) -> DynamicObject {
    serde_json::from_value(value).expect("fixture is a valid object")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrong_shapes_read_as_missing() {
        let o = object(json!({
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"replicas": "three"},
            "status": {"conditions": [{"status": "True"}, "junk", {"type": "Ready", "status": "False"}]}
        }));
        assert_eq!(group_kind(&o), ("example.com", "Widget"));
        assert_eq!(int(&o, &["spec", "replicas"]), None);
        assert_eq!(string(&o, &["spec", "replicas", "deeper"]), None);
        let types: Vec<_> = conditions(&o).iter().map(|c| c.type_).collect();
        assert_eq!(types, ["Ready"]);
        assert!(condition(&o, "Ready").is_some_and(|c| c.is_false()));
    }

    #[test]
    fn core_group_is_empty() {
        let o = object(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}));
        assert_eq!(group_kind(&o), ("", "Pod"));
    }
}
