//! Rules every object obeys, whatever its kind (kstatus's "generic properties").
//!
//! [`preconditions`] runs before any kind rule: a deleted object, one whose controller has not seen the
//! latest spec, or one that says `Reconciling`/`Stalled` is judged on that alone, because the rest of
//! its status describes an older spec or is being rewritten. [`ready_condition`] is the fallback for
//! kinds without a rule of their own (most custom resources).

use kube::api::DynamicObject;

use crate::Health;
use crate::fields::{self, condition};

/// Deletion, observedGeneration, `Reconciling=True`, `Stalled=True`: a verdict, or `None` to go on.
pub fn preconditions(object: &DynamicObject) -> Option<Health> {
    if object.metadata.deletion_timestamp.is_some() {
        return Some(Health::new(
            crate::HealthStatus::Terminating,
            "Resource scheduled for deletion",
        ));
    }
    if let Some(health) = generation_observed(object) {
        return Some(health);
    }
    // Stalled before Reconciling: a controller that gave up says more than one that is busy.
    if let Some(stalled) = condition(object, "Stalled").filter(|c| c.is_true()) {
        return Some(Health::failed(or_default(stalled.explanation(), "Stalled")));
    }
    if let Some(reconciling) = condition(object, "Reconciling").filter(|c| c.is_true()) {
        return Some(Health::in_progress(or_default(
            reconciling.explanation(),
            "Reconciling",
        )));
    }
    None
}

/// An object whose controller has not yet seen its latest spec is in progress, whatever its status
/// says. Objects without `status.observedGeneration` are not judged here (many kinds never set it).
fn generation_observed(object: &DynamicObject) -> Option<Health> {
    let generation = object.metadata.generation?;
    let observed = fields::int(object, &["status", "observedGeneration"])?;
    (observed < generation).then(|| {
        Health::in_progress(format!(
            "waiting for the {} controller to observe generation {generation} (observed {observed})",
            fields::kind(object)
        ))
    })
}

/// The `Ready` condition, for kinds without a rule of their own: True → Current, otherwise in progress
/// with the condition's reason. `None` when there is no `Ready` condition.
pub fn ready_condition(object: &DynamicObject) -> Option<Health> {
    let ready = condition(object, "Ready")?;
    Some(if ready.is_true() {
        Health::current(or_default(ready.explanation(), "Ready"))
    } else {
        Health::in_progress(or_default(
            ready.explanation(),
            &format!("Ready is {}", or_default(ready.status.to_string(), "unset")),
        ))
    })
}

fn or_default(text: String, default: &str) -> String {
    if text.is_empty() {
        default.to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::object;
    use crate::{HealthStatus, assess};
    use serde_json::json;

    fn widget(metadata: serde_json::Value, status: serde_json::Value) -> DynamicObject {
        let mut metadata = metadata;
        metadata["name"] = json!("w");
        object(json!({
            "apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": metadata, "status": status
        }))
    }

    #[test]
    fn deletion_wins_over_everything() {
        let o = widget(
            json!({"deletionTimestamp": "2026-01-01T00:00:00Z", "generation": 2}),
            json!({"observedGeneration": 1, "conditions": [{"type": "Stalled", "status": "True"}]}),
        );
        assert_eq!(assess(&o).status, HealthStatus::Terminating);
    }

    #[test]
    fn unobserved_generation_is_in_progress() {
        let o = widget(
            json!({"generation": 3}),
            json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}),
        );
        let health = assess(&o);
        assert_eq!(health.status, HealthStatus::InProgress);
        assert_eq!(
            health.message,
            "waiting for the Widget controller to observe generation 3 (observed 2)"
        );
    }

    #[test]
    fn observed_generation_goes_on_to_conditions() {
        let o = widget(
            json!({"generation": 3}),
            json!({"observedGeneration": 3, "conditions": [{"type": "Ready", "status": "True"}]}),
        );
        assert_eq!(assess(&o).status, HealthStatus::Current);
    }

    #[test]
    fn stalled_is_failed_with_reason() {
        let o = widget(
            json!({}),
            json!({"conditions": [
                {"type": "Reconciling", "status": "True", "reason": "Progressing"},
                {"type": "Stalled", "status": "True", "reason": "InvalidSpec", "message": "size must be positive"}
            ]}),
        );
        assert_eq!(
            assess(&o),
            Health::failed("InvalidSpec: size must be positive")
        );
    }

    #[test]
    fn reconciling_is_in_progress() {
        let o = widget(
            json!({}),
            json!({"conditions": [
                {"type": "Reconciling", "status": "True", "message": "creating volume"},
                {"type": "Ready", "status": "True"}
            ]}),
        );
        assert_eq!(assess(&o), Health::in_progress("creating volume"));
    }

    #[test]
    fn ready_condition_decides_unknown_kinds() {
        let not_ready = widget(
            json!({}),
            json!({"conditions": [{"type": "Ready", "status": "False", "reason": "DependencyMissing", "message": "secret db not found"}]}),
        );
        assert_eq!(
            assess(&not_ready),
            Health::in_progress("DependencyMissing: secret db not found")
        );
        let unknown = widget(
            json!({}),
            json!({"conditions": [{"type": "Ready", "status": "Unknown"}]}),
        );
        assert_eq!(assess(&unknown), Health::in_progress("Ready is Unknown"));
        let ready = widget(
            json!({}),
            json!({"conditions": [{"type": "Ready", "status": "True"}]}),
        );
        assert_eq!(assess(&ready).status, HealthStatus::Current);
    }

    #[test]
    fn object_without_kind_is_unknown() {
        // Like the items of a list response: a Ready Pod must not pass as "some object that exists".
        let o = object(json!({"metadata": {"name": "web-abc"}, "status": {"phase": "Pending"}}));
        assert_eq!(assess(&o).status, HealthStatus::Unknown);
    }

    #[test]
    fn unknown_kind_without_status_is_current() {
        let o = object(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}));
        assert_eq!(assess(&o), Health::current("Resource exists"));
    }
}
