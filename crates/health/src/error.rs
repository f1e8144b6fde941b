//! The one error type of the health stage. Every variant names the group/kind whose rule is at fault,
//! because a user with twenty custom rules needs to know which one to fix.

/// What went wrong with a custom health rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    /// The CEL expression does not parse; found when the rules are loaded, before any sync.
    #[error("custom health rule for {}: invalid CEL expression {expression:?}: {message}", group_kind(.group, .kind))]
    InvalidExpression {
        group: String,
        kind: String,
        expression: String,
        message: String,
    },
    /// Two rules for the same group/kind: which one wins would be an accident of ordering.
    #[error("custom health rule for {} is defined twice", group_kind(.group, .kind))]
    DuplicateRule { group: String, kind: String },
    /// The expression compiled but failed on this object (e.g. a field it reads is missing; guard
    /// with `has(...)`).
    #[error("custom health rule for {} failed: {message}", group_kind(.group, .kind))]
    Evaluation {
        group: String,
        kind: String,
        message: String,
    },
    /// The expression returned something other than a bool or a `{status, message}` map.
    #[error(
        "custom health rule for {} returned {got}; expected a bool or a map {{status: \"Current\"|\"InProgress\"|\"Failed\", message: string}}",
        group_kind(.group, .kind)
    )]
    InvalidResult {
        group: String,
        kind: String,
        got: String,
    },
}

/// `Widget.example.com`, or `Pod` for the core group: kubectl's way of naming a kind.
pub(crate) fn group_kind(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}
