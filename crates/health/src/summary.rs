//! Many verdicts → one, for `--wait`: the overall status, the counts, and what is still not Current
//! and why, failures first. The engine prints it on every poll and once more at the end.

use std::collections::BTreeMap;
use std::fmt;

use capstan_core::ObjectRef;

use crate::{Health, HealthStatus};

/// The state of a set of objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Failed if any object failed; Current if all are (or there are none); InProgress otherwise —
    /// Terminating, NotFound and Unknown objects are not there yet, but may still get there.
    pub status: HealthStatus,
    pub total: usize,
    /// How many objects have each status; statuses nobody has are left out.
    pub counts: BTreeMap<HealthStatus, usize>,
    /// Every object that is not Current: Failed first, then by status, then by reference.
    pub pending: Vec<(ObjectRef, Health)>,
}

impl Summary {
    pub fn is_healthy(&self) -> bool {
        self.status == HealthStatus::Current
    }

    pub fn count(&self, status: HealthStatus) -> usize {
        self.counts.get(&status).copied().unwrap_or(0)
    }
}

/// Sums up the verdicts of one wait poll.
pub fn summarize(results: &[(ObjectRef, Health)]) -> Summary {
    let mut counts = BTreeMap::new();
    for (_, health) in results {
        *counts.entry(health.status).or_insert(0) += 1;
    }
    let mut pending: Vec<(ObjectRef, Health)> = results
        .iter()
        .filter(|(_, health)| !health.is_current())
        .cloned()
        .collect();
    pending.sort_by(|(a_ref, a), (b_ref, b)| {
        let rank = |h: &Health| (h.status != HealthStatus::Failed, h.status);
        rank(a).cmp(&rank(b)).then_with(|| a_ref.cmp(b_ref))
    });
    let status = if counts.contains_key(&HealthStatus::Failed) {
        HealthStatus::Failed
    } else if pending.is_empty() {
        HealthStatus::Current
    } else {
        HealthStatus::InProgress
    };
    Summary {
        status,
        total: results.len(),
        counts,
        pending,
    }
}

impl fmt::Display for Summary {
    /// ```text
    /// 3/5 current, 1 failed, 1 in progress
    ///   Deployment.apps shop/api: Failed: progress deadline exceeded: ...
    ///   Deployment.apps shop/web: InProgress: 1/2 replicas available
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} current",
            self.count(HealthStatus::Current),
            self.total
        )?;
        for (status, count) in &self.counts {
            let label = match status {
                HealthStatus::Current => continue,
                HealthStatus::InProgress => "in progress",
                HealthStatus::Failed => "failed",
                HealthStatus::Terminating => "terminating",
                HealthStatus::NotFound => "not found",
                HealthStatus::Unknown => "unknown",
            };
            write!(f, ", {count} {label}")?;
        }
        for (object, health) in &self.pending {
            write!(f, "\n  {object}: {health}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: &str, name: &str) -> ObjectRef {
        ObjectRef {
            group: "apps".into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: Some("shop".into()),
            name: name.into(),
        }
    }

    #[test]
    fn all_current_is_healthy() {
        let summary = summarize(&[
            (object("Deployment", "web"), Health::current("ok")),
            (object("StatefulSet", "db"), Health::current("ok")),
        ]);
        assert!(summary.is_healthy());
        assert!(summary.pending.is_empty());
        assert_eq!(summary.to_string(), "2/2 current");
    }

    #[test]
    fn nothing_to_wait_for_is_healthy() {
        assert!(summarize(&[]).is_healthy());
    }

    #[test]
    fn failures_come_first_and_decide() {
        let summary = summarize(&[
            (
                object("Deployment", "web"),
                Health::in_progress("1/2 replicas available"),
            ),
            (object("Deployment", "ok"), Health::current("fine")),
            (
                object("Deployment", "zeta"),
                Health::failed("progress deadline exceeded: timed out"),
            ),
            (object("Deployment", "gone"), Health::not_found()),
        ]);
        assert_eq!(summary.status, HealthStatus::Failed);
        assert_eq!(summary.count(HealthStatus::InProgress), 1);
        assert_eq!(
            summary.to_string(),
            "1/4 current, 1 in progress, 1 failed, 1 not found\n  \
             Deployment.apps shop/zeta: Failed: progress deadline exceeded: timed out\n  \
             Deployment.apps shop/web: InProgress: 1/2 replicas available\n  \
             Deployment.apps shop/gone: NotFound: object not found"
        );
    }

    #[test]
    fn anything_not_current_keeps_the_wait_going() {
        for status in [
            HealthStatus::InProgress,
            HealthStatus::Terminating,
            HealthStatus::NotFound,
            HealthStatus::Unknown,
        ] {
            let summary = summarize(&[
                (object("Deployment", "a"), Health::current("ok")),
                (object("Deployment", "b"), Health::new(status, "x")),
            ]);
            assert_eq!(summary.status, HealthStatus::InProgress, "{status}");
        }
    }
}
