//! Unified YAML diffs between the live object and the object the server would store.

use serde_json::Value;
use similar::TextDiff;

/// YAML of a JSON value; keys were sorted by [`crate::normalize::canonical`], so output is stable.
pub fn to_yaml(value: &Value) -> String {
    // Serialising a serde_json::Value cannot fail: every map key is a string.
    serde_saphyr::to_string(value).unwrap_or_else(|e| format!("# cannot render as YAML: {e}\n"))
}

/// A unified diff with 3 lines of context; empty when both sides render the same.
pub fn unified(before: Option<&Value>, after: Option<&Value>, label: &str) -> String {
    let before = before.map(to_yaml).unwrap_or_default();
    let after = after.map(to_yaml).unwrap_or_default();
    if before == after {
        return String::new();
    }
    TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("live/{label}"), &format!("git/{label}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shows_only_the_changed_lines_with_context() {
        let before = json!({"data": {"a": "1", "b": "2"}, "kind": "ConfigMap"});
        let after = json!({"data": {"a": "1", "b": "3"}, "kind": "ConfigMap"});
        let diff = unified(Some(&before), Some(&after), "ConfigMap/x");
        assert!(
            diff.contains("-  b: '2'") || diff.contains("-  b: \"2\""),
            "{diff}"
        );
        assert!(
            diff.contains("+  b: '3'") || diff.contains("+  b: \"3\""),
            "{diff}"
        );
        assert!(
            diff.starts_with("--- live/ConfigMap/x\n+++ git/ConfigMap/x\n"),
            "{diff}"
        );
        assert_eq!(unified(Some(&before), Some(&before), "x"), "");
    }
}
