//! kstatus conditions: `Ready`, `Reconciling` and `Stalled`, set together so that tools that read
//! kstatus (Capstan's own health stage, Flux, kubectl wait) agree on what a status means.

use crate::api::Condition;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// The state a reconciliation ends in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: Ready=True.
    Ready { reason: String, message: String },
    /// Still working (health progressing, dependency or source not ready): Ready=False,
    /// Reconciling=True.
    Progressing { reason: String, message: String },
    /// Failed and retrying (fetch failure, API error): Ready=False.
    Failed { reason: String, message: String },
    /// Cannot succeed without a change of input (render error, rejected object, RBAC denial,
    /// dependency cycle): Ready=False, Stalled=True.
    Stalled { reason: String, message: String },
}

impl Outcome {
    pub fn is_ready(&self) -> bool {
        matches!(self, Outcome::Ready { .. })
    }

    pub fn reason(&self) -> &str {
        match self {
            Outcome::Ready { reason, .. }
            | Outcome::Progressing { reason, .. }
            | Outcome::Failed { reason, .. }
            | Outcome::Stalled { reason, .. } => reason,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Outcome::Ready { message, .. }
            | Outcome::Progressing { message, .. }
            | Outcome::Failed { message, .. }
            | Outcome::Stalled { message, .. } => message,
        }
    }
}

/// The conditions for `outcome`, keeping `lastTransitionTime` of conditions whose status did not
/// change (so a steady state writes nothing new).
pub fn conditions(
    previous: &[Condition],
    outcome: &Outcome,
    generation: Option<i64>,
    now: &str,
) -> Vec<Condition> {
    let (ready, reconciling, stalled) = match outcome {
        Outcome::Ready { .. } => ("True", false, false),
        Outcome::Progressing { .. } => ("False", true, false),
        Outcome::Failed { .. } => ("False", false, false),
        Outcome::Stalled { .. } => ("False", false, true),
    };
    let make = |type_: &str, status: &str| {
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.to_string());
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: outcome.reason().to_string(),
            message: truncate(outcome.message(), 4096),
            last_transition_time,
            observed_generation: generation,
        }
    };
    let mut out = vec![make(READY, ready)];
    // kstatus: abnormal-true conditions are present only while true.
    if reconciling {
        out.push(make(RECONCILING, "True"));
    }
    if stalled {
        out.push(make(STALLED, "True"));
    }
    out
}

/// Whether the conditions say Ready=True for this generation.
pub fn is_ready(conditions: &[Condition], generation: Option<i64>) -> bool {
    conditions.iter().any(|c| {
        c.type_ == READY
            && c.status == "True"
            && (generation.is_none() || c.observed_generation == generation)
    })
}

/// Cuts a message at a character boundary (condition messages are bounded by the API's 32 KiB).
pub fn truncate(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_string();
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stalled() -> Outcome {
        Outcome::Stalled {
            reason: "RenderFailed".into(),
            message: "bad.yaml#2: ...".into(),
        }
    }

    #[test]
    fn stalled_sets_ready_false_and_stalled_true() {
        let c = conditions(&[], &stalled(), Some(3), "T1");
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].type_.as_str(), c[0].status.as_str()),
            ("Ready", "False")
        );
        assert_eq!(
            (c[1].type_.as_str(), c[1].status.as_str()),
            ("Stalled", "True")
        );
        assert!(c.iter().all(|c| c.observed_generation == Some(3)));
        assert!(!is_ready(&c, Some(3)));
    }

    #[test]
    fn unchanged_status_keeps_transition_time() {
        let first = conditions(&[], &stalled(), Some(1), "T1");
        let again = conditions(&first, &stalled(), Some(1), "T2");
        assert_eq!(again[0].last_transition_time, "T1");
        let ready = Outcome::Ready {
            reason: "Synced".into(),
            message: "ok".into(),
        };
        let recovered = conditions(&again, &ready, Some(1), "T3");
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].last_transition_time, "T3");
        assert!(is_ready(&recovered, Some(1)));
        assert!(
            !is_ready(&recovered, Some(2)),
            "an older generation is not ready"
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
