//! The one place an Application's status is built: what a reconciliation learned ([`Report`]) over
//! the previous status. Fields a reconciliation did not look at keep their previous value.

use capstan_api::crd::{
    ApplicationStatus, DriftedObject, HealthStatus, HistoryEntry, InventorySummary, PlanSummary,
    SyncResult, SyncState, SyncStatus, Trigger,
};

use crate::conditions::{Outcome, conditions, truncate};

/// How many syncs the history keeps.
pub const HISTORY: usize = 10;

/// What one reconciliation learned; `None` leaves the previous value.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub generation: Option<i64>,
    /// The revision now synced (or compared, when not automated): moves `sync.revision`.
    pub revision: Option<String>,
    pub pinned_revision: Option<Option<String>>,
    pub last_handled_request: Option<Option<String>>,
    pub sync: Option<SyncState>,
    pub drift: Option<Vec<DriftedObject>>,
    pub last_plan: Option<PlanSummary>,
    pub inventory: Option<InventorySummary>,
    pub health: Option<HealthStatus>,
    /// A sync that happened (succeeded or failed).
    pub history: Option<History>,
}

/// One sync, for the history.
#[derive(Clone, Debug)]
pub struct History {
    pub revision: String,
    pub trigger: Trigger,
    pub result: SyncResult,
    pub message: String,
}

/// The new status: `report` over `previous`, with the conditions for `outcome`.
pub fn build(
    previous: &ApplicationStatus,
    report: &Report,
    outcome: &Outcome,
    now: &str,
) -> ApplicationStatus {
    let mut status = previous.clone();
    status.observed_generation = report.generation;
    if let Some(pinned) = &report.pinned_revision {
        status.pinned_revision.clone_from(pinned);
    }
    if let Some(request) = &report.last_handled_request {
        status.last_handled_request.clone_from(request);
    }
    if let Some(state) = report.sync {
        match (&mut status.sync, &report.revision) {
            (_, Some(revision)) => {
                status.sync = Some(SyncStatus {
                    status: state,
                    revision: revision.clone(),
                })
            }
            (Some(sync), None) => sync.status = state,
            (None, None) => {}
        }
    }
    if let Some(drift) = &report.drift {
        status.drift.clone_from(drift);
    }
    if let Some(plan) = &report.last_plan {
        status.last_plan = Some(plan.clone());
    }
    if let Some(inventory) = &report.inventory {
        status.inventory = Some(inventory.clone());
    }
    if let Some(health) = &report.health {
        status.health = Some(health.clone());
    }
    if let Some(history) = &report.history {
        push_history(&mut status, history, now);
    }
    status.conditions = conditions(&previous.conditions, outcome, report.generation, now);
    status
}

fn push_history(status: &mut ApplicationStatus, history: &History, now: &str) {
    let revision = history.revision.as_str();
    // One entry per failing revision, not one per retry.
    let repeated = history.result == SyncResult::Failed
        && status.history.first().is_some_and(|h| {
            h.revision == revision
                && h.result == SyncResult::Failed
                && h.message == truncate(&history.message, 1024)
        });
    if repeated {
        return;
    }
    status.history.insert(
        0,
        HistoryEntry {
            revision: revision.to_string(),
            time: now.to_string(),
            result: history.result,
            trigger: history.trigger,
            message: truncate(&history.message, 1024),
        },
    );
    status.history.truncate(HISTORY);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready() -> Outcome {
        Outcome::Ready {
            reason: "Synced".into(),
            message: "ok".into(),
        }
    }

    fn sync(revision: &str, result: SyncResult, trigger: Trigger) -> Report {
        Report {
            revision: Some(revision.into()),
            history: Some(History {
                revision: revision.into(),
                trigger,
                result,
                message: "bad".into(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn history_keeps_the_last_ten_newest_first_and_one_entry_per_failing_revision() {
        let mut status = ApplicationStatus::default();
        for i in 0..12 {
            status = build(
                &status,
                &sync(&format!("r{i}"), SyncResult::Succeeded, Trigger::Source),
                &ready(),
                "T",
            );
        }
        assert_eq!(status.history.len(), 10);
        assert_eq!(status.history[0].revision, "r11");
        status = build(
            &status,
            &sync("r12", SyncResult::Failed, Trigger::Source),
            &ready(),
            "T",
        );
        status = build(
            &status,
            &sync("r12", SyncResult::Failed, Trigger::Interval),
            &ready(),
            "T",
        );
        assert_eq!(
            status
                .history
                .iter()
                .filter(|h| h.revision == "r12")
                .count(),
            1
        );
        status = build(
            &status,
            &sync("r12", SyncResult::Succeeded, Trigger::Manual),
            &ready(),
            "T",
        );
        assert_eq!(status.history[0].result, "Succeeded");
        assert_eq!(status.history[0].trigger, "manual");
    }

    #[test]
    fn what_was_not_looked_at_keeps_its_value() {
        let previous = build(
            &ApplicationStatus::default(),
            &Report {
                generation: Some(1),
                revision: Some("main@sha1:a".into()),
                sync: Some(SyncState::Synced),
                inventory: Some(InventorySummary {
                    objects: 3,
                    ..Default::default()
                }),
                ..Default::default()
            },
            &ready(),
            "T1",
        );
        let failed = build(
            &previous,
            &Report {
                generation: Some(2),
                sync: Some(SyncState::OutOfSync),
                ..Default::default()
            },
            &Outcome::Failed {
                reason: "SyncFailed".into(),
                message: "boom".into(),
            },
            "T2",
        );
        let sync = failed.sync.as_ref().expect("sync status");
        assert_eq!(sync.status, SyncState::OutOfSync);
        assert_eq!(sync.revision, "main@sha1:a", "the revision stays");
        assert_eq!(failed.inventory.as_ref().map(|i| i.objects), Some(3));
        assert_eq!(failed.observed_generation, Some(2));
        assert_eq!(failed.conditions[0].status, "False");
    }
}
