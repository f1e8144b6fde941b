//! What a reconciliation of an Application does, decided without side effects.
//!
//! A reconciliation is decide → act → report: [`admit`] says whether the app may go on at all
//! (suspend, `dependsOn`), [`trigger`] names why it runs, [`decide`] picks the next step from the
//! trigger, the sync policy and (once there is one) the plan, and the error policy waits
//! [`Retry::backoff_after`](capstan_api::spec::Retry::backoff_after) the failures so far. `apps`
//! performs the steps and `status` writes what happened once. Every function here is a table-tested
//! pure decision.

use std::time::Duration;

use capstan_api::crd::Trigger;
use capstan_api::spec::SyncPolicy;

/// What `dependsOn` allows now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dependencies {
    Ready,
    /// The first dependency that is missing or not Ready.
    Waiting(String),
    /// A cycle through this app, e.g. `ns/a → ns/b → ns/a`.
    Cycle(String),
}

/// Whether a reconciliation goes on, before anything is fetched or rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Proceed,
    /// `spec.suspend`: nothing is done or written until the spec changes.
    Suspended,
    /// A dependency is not Ready: report it and look again (a dependency turning Ready wakes the
    /// app; the requeue is a safety net).
    Waiting {
        which: String,
        requeue: Duration,
    },
    /// `dependsOn` forms a cycle: stalled until the spec changes.
    Cycle {
        path: String,
    },
}

/// How soon an app waiting for a dependency looks again without being woken.
pub const DEPENDENCY_POLL: Duration = Duration::from_secs(30);

pub fn admit(suspended: bool, dependencies: &Dependencies) -> Admission {
    if suspended {
        return Admission::Suspended;
    }
    match dependencies {
        Dependencies::Ready => Admission::Proceed,
        Dependencies::Waiting(which) => Admission::Waiting {
            which: which.clone(),
            requeue: DEPENDENCY_POLL,
        },
        Dependencies::Cycle(path) => Admission::Cycle { path: path.clone() },
    }
}

/// What changed since the last reconciliation, as the status and the object tell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// `capstan.dev/requested-at` differs from the last handled request.
    pub requested: bool,
    /// The pin (`capstan.dev/pinned-revision`) is set and differs from the status' pinned revision.
    pub pin_changed: bool,
    /// The generation differs from the status' observed generation.
    pub spec_changed: bool,
    /// The source's revision differs from the last synced or compared one.
    pub new_revision: bool,
}

/// Why this reconciliation runs; the first that applies wins. `Drift` is found only by a plan
/// ([`decide`]).
pub fn trigger(changes: &Changes) -> Trigger {
    if changes.requested {
        Trigger::Manual
    } else if changes.pin_changed {
        Trigger::Rollback
    } else if changes.spec_changed {
        Trigger::Spec
    } else if changes.new_revision {
        Trigger::Source
    } else {
        Trigger::Interval
    }
}

/// What a plan found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanFacts {
    /// An object would be created, updated or replaced.
    pub changes: bool,
    /// An object left Git and could be pruned.
    pub prunes: bool,
}

impl PlanFacts {
    /// Whether the live state differs from Git under this policy (prunes count only with prune).
    pub fn differs(self, prune: bool) -> bool {
        self.changes || (prune && self.prunes)
    }
}

/// The next step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The new revision renders exactly what is synced and Ready: record the revision, nothing else.
    RecordRevision,
    /// Plan first: the plan says whether anything differs (and who changed it) without writing.
    Plan,
    /// Sync now (the sync plans itself).
    Sync { trigger: Trigger },
    /// Report the plan and change nothing: in sync, or out of sync but not allowed to sync.
    Report { trigger: Trigger, in_sync: bool },
}

/// The situation [`decide`] looks at.
#[derive(Clone, Copy, Debug)]
pub struct Situation<'a> {
    pub trigger: Trigger,
    pub policy: &'a SyncPolicy,
    /// The app was Synced and Ready, and the new revision renders the same objects as then.
    pub unchanged_inputs: bool,
    /// The plan, once made.
    pub plan: Option<PlanFacts>,
}

/// Manual requests always sync; automated apps sync new revisions, spec changes and rollbacks at
/// once (a separate plan would dry-run every object twice); anything else is planned first, and
/// synced only when automated and different — drift (a difference found on the interval) only
/// with selfHeal.
pub fn decide(situation: &Situation<'_>) -> Decision {
    let policy = situation.policy;
    let trigger = situation.trigger;
    if trigger == Trigger::Source && situation.unchanged_inputs {
        return Decision::RecordRevision;
    }
    let at_once = matches!(trigger, Trigger::Source | Trigger::Spec | Trigger::Rollback);
    if trigger == Trigger::Manual || (policy.automated && at_once) {
        return Decision::Sync { trigger };
    }
    let Some(plan) = situation.plan else {
        return Decision::Plan;
    };
    let differs = plan.differs(policy.prune);
    let trigger = if differs && trigger == Trigger::Interval {
        Trigger::Drift
    } else {
        trigger
    };
    if policy.automated && differs && (trigger != Trigger::Drift || policy.self_heal) {
        Decision::Sync { trigger }
    } else {
        Decision::Report {
            trigger,
            in_sync: !differs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIGGERS: [Trigger; 6] = [
        Trigger::Manual,
        Trigger::Rollback,
        Trigger::Spec,
        Trigger::Source,
        Trigger::Interval,
        Trigger::Dependency,
    ];

    fn policy(automated: bool, self_heal: bool, prune: bool) -> SyncPolicy {
        SyncPolicy {
            automated,
            self_heal,
            prune,
            ..Default::default()
        }
    }

    /// Runs a reconciliation's decisions to the end: plan when asked, then decide again.
    fn run(
        trigger: Trigger,
        policy: &SyncPolicy,
        unchanged: bool,
        plan: PlanFacts,
    ) -> (bool, Decision) {
        let mut situation = Situation {
            trigger,
            policy,
            unchanged_inputs: unchanged,
            plan: None,
        };
        let first = decide(&situation);
        if first != Decision::Plan {
            return (false, first);
        }
        situation.plan = Some(plan);
        let second = decide(&situation);
        assert_ne!(second, Decision::Plan, "a plan is asked for once");
        (true, second)
    }

    #[test]
    fn every_trigger_and_policy() {
        let clean = PlanFacts::default();
        let changed = PlanFacts {
            changes: true,
            prunes: false,
        };
        let prunable = PlanFacts {
            changes: false,
            prunes: true,
        };
        for trigger in TRIGGERS {
            for automated in [false, true] {
                for self_heal in [false, true] {
                    for prune in [false, true] {
                        let policy = policy(automated, self_heal, prune);
                        for (name, plan) in [
                            ("clean", clean),
                            ("changed", changed),
                            ("prunable", prunable),
                        ] {
                            let (planned, decision) = run(trigger, &policy, false, plan);
                            let differs = plan.changes || (prune && plan.prunes);
                            let at_once = matches!(
                                trigger,
                                Trigger::Source | Trigger::Spec | Trigger::Rollback
                            );
                            let case = format!(
                                "{trigger} automated={automated} selfHeal={self_heal} prune={prune} plan={name}"
                            );
                            let expected = if trigger == Trigger::Manual || (automated && at_once) {
                                assert!(!planned, "{case}: syncs without a separate plan");
                                Decision::Sync { trigger }
                            } else {
                                assert!(planned, "{case}: plans first");
                                let seen = if differs && trigger == Trigger::Interval {
                                    Trigger::Drift
                                } else {
                                    trigger
                                };
                                let heal = seen != Trigger::Drift || self_heal;
                                if automated && differs && heal {
                                    Decision::Sync { trigger: seen }
                                } else {
                                    Decision::Report {
                                        trigger: seen,
                                        in_sync: !differs,
                                    }
                                }
                            };
                            assert_eq!(decision, expected, "{case}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn named_cases() {
        let manual = policy(false, false, false);
        let auto = policy(true, false, false);
        let heal = policy(true, true, false);
        let auto_prune = policy(true, false, true);
        let changed = PlanFacts {
            changes: true,
            prunes: false,
        };
        let prunable = PlanFacts {
            changes: false,
            prunes: true,
        };
        let table: &[(&str, Trigger, &SyncPolicy, bool, PlanFacts, Decision)] = &[
            (
                "not automated: a new revision is only reported",
                Trigger::Source,
                &manual,
                false,
                changed,
                Decision::Report {
                    trigger: Trigger::Source,
                    in_sync: false,
                },
            ),
            (
                "not automated: a manual request syncs",
                Trigger::Manual,
                &manual,
                false,
                changed,
                Decision::Sync {
                    trigger: Trigger::Manual,
                },
            ),
            (
                "automated: a new revision syncs at once",
                Trigger::Source,
                &auto,
                false,
                changed,
                Decision::Sync {
                    trigger: Trigger::Source,
                },
            ),
            (
                "automated: a new revision rendering the same objects is only recorded",
                Trigger::Source,
                &auto,
                true,
                changed,
                Decision::RecordRevision,
            ),
            (
                "unchanged inputs only matter for a new revision",
                Trigger::Spec,
                &auto,
                true,
                changed,
                Decision::Sync {
                    trigger: Trigger::Spec,
                },
            ),
            (
                "automated: a rollback pin syncs at once",
                Trigger::Rollback,
                &auto,
                false,
                changed,
                Decision::Sync {
                    trigger: Trigger::Rollback,
                },
            ),
            (
                "automated without selfHeal: drift is reported",
                Trigger::Interval,
                &auto,
                false,
                changed,
                Decision::Report {
                    trigger: Trigger::Drift,
                    in_sync: false,
                },
            ),
            (
                "selfHeal: drift is healed",
                Trigger::Interval,
                &heal,
                false,
                changed,
                Decision::Sync {
                    trigger: Trigger::Drift,
                },
            ),
            (
                "nothing differs on the interval: in sync",
                Trigger::Interval,
                &heal,
                false,
                PlanFacts::default(),
                Decision::Report {
                    trigger: Trigger::Interval,
                    in_sync: true,
                },
            ),
            (
                "a prune candidate differs only with prune",
                Trigger::Interval,
                &auto,
                false,
                prunable,
                Decision::Report {
                    trigger: Trigger::Interval,
                    in_sync: true,
                },
            ),
            (
                "with prune, a prune candidate is drift",
                Trigger::Interval,
                &auto_prune,
                false,
                prunable,
                Decision::Report {
                    trigger: Trigger::Drift,
                    in_sync: false,
                },
            ),
            (
                "a dependency turning Ready plans, then syncs when automated",
                Trigger::Dependency,
                &auto,
                false,
                changed,
                Decision::Sync {
                    trigger: Trigger::Dependency,
                },
            ),
        ];
        for (name, trigger, policy, unchanged, plan, expected) in table {
            assert_eq!(
                run(*trigger, policy, *unchanged, *plan).1,
                *expected,
                "{name}"
            );
        }
    }

    #[test]
    fn triggers_in_precedence_order() {
        let all = Changes {
            requested: true,
            pin_changed: true,
            spec_changed: true,
            new_revision: true,
        };
        let table = [
            (all.clone(), Trigger::Manual),
            (
                Changes {
                    requested: false,
                    ..all.clone()
                },
                Trigger::Rollback,
            ),
            (
                Changes {
                    requested: false,
                    pin_changed: false,
                    ..all.clone()
                },
                Trigger::Spec,
            ),
            (
                Changes {
                    new_revision: true,
                    ..Default::default()
                },
                Trigger::Source,
            ),
            (Changes::default(), Trigger::Interval),
        ];
        for (changes, expected) in table {
            assert_eq!(trigger(&changes), expected, "{changes:?}");
        }
    }

    #[test]
    fn suspend_wins_then_dependencies() {
        let waiting = Dependencies::Waiting("Application ns/db".into());
        let cycle = Dependencies::Cycle("ns/a → ns/b → ns/a".into());
        let table = [
            (true, Dependencies::Ready, Admission::Suspended),
            (true, waiting.clone(), Admission::Suspended),
            (true, cycle.clone(), Admission::Suspended),
            (false, Dependencies::Ready, Admission::Proceed),
            (
                false,
                waiting,
                Admission::Waiting {
                    which: "Application ns/db".into(),
                    requeue: DEPENDENCY_POLL,
                },
            ),
            (
                false,
                cycle,
                Admission::Cycle {
                    path: "ns/a → ns/b → ns/a".into(),
                },
            ),
        ];
        for (suspended, dependencies, expected) in table {
            assert_eq!(
                admit(suspended, &dependencies),
                expected,
                "suspend={suspended} {dependencies:?}"
            );
        }
    }
}
