//! Secret values never reach a diff, a plan file or a log: only whether each key changed.

use serde_json::Value;

const UNCHANGED: &str = "*** (unchanged)";
const BEFORE: &str = "*** (before)";
const AFTER: &str = "*** (after)";
/// kubectl's client-side apply copies the whole object, data included, into this annotation.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

pub fn is_secret(object: &Value) -> bool {
    object.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && object.get("kind").and_then(Value::as_str) == Some("Secret")
}

/// Masks `data` and `stringData` of a Secret pair (either may be absent), keeping per key whether it was
/// added, removed, changed or unchanged.
pub fn mask_secret_pair(before: Option<&mut Value>, after: Option<&mut Value>) {
    let (mut before, mut after) = (before, after);
    for field in ["data", "stringData"] {
        let old = before
            .as_deref()
            .and_then(|v| v.get(field))
            .and_then(Value::as_object)
            .cloned();
        let new = after
            .as_deref()
            .and_then(|v| v.get(field))
            .and_then(Value::as_object)
            .cloned();
        if let Some(target) = before.as_deref_mut().and_then(|v| v.get_mut(field)) {
            mask_map(target, new.as_ref(), BEFORE);
        }
        if let Some(target) = after.as_deref_mut().and_then(|v| v.get_mut(field)) {
            mask_map(target, old.as_ref(), AFTER);
        }
    }
    for side in [before, after].into_iter().flatten() {
        if let Some(annotation) = side
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
            .and_then(|a| a.get_mut(LAST_APPLIED))
        {
            *annotation = Value::String("***".into());
        }
    }
}

fn mask_map(target: &mut Value, other: Option<&serde_json::Map<String, Value>>, changed: &str) {
    let Some(map) = target.as_object_mut() else {
        return;
    };
    for (key, value) in map.iter_mut() {
        let same = other.and_then(|o| o.get(key)) == Some(value);
        *value = Value::String(if same { UNCHANGED } else { changed }.into());
    }
}

/// Masks a single Secret (no counterpart): every value hidden.
pub fn mask_secret(object: &mut Value) {
    mask_secret_pair(None, Some(object));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_hidden_but_changes_are_visible() {
        let mut live = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"annotations": {LAST_APPLIED: "{\"data\":{\"password\":\"aHVudGVyMg==\"}}"}},
            "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4=", "old": "eA=="}});
        let mut desired = json!({"apiVersion": "v1", "kind": "Secret",
            "data": {"password": "bmV3", "user": "YWRtaW4=", "added": "eQ=="}});
        mask_secret_pair(Some(&mut live), Some(&mut desired));
        let text = format!("{live}{desired}");
        for secret in ["aHVudGVyMg==", "YWRtaW4=", "bmV3", "eA==", "eQ=="] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(live["data"]["password"], BEFORE);
        assert_eq!(desired["data"]["password"], AFTER);
        assert_eq!(live["data"]["user"], UNCHANGED);
        assert_eq!(desired["data"]["user"], UNCHANGED);
        assert_eq!(desired["data"]["added"], AFTER);
        assert_eq!(live["data"]["old"], BEFORE);
    }
}
