//! The health stage: is an applied object done, still on its way, or broken?
//!
//! Pure logic over objects read from the cluster; this crate never talks to the API server (only
//! `capstan-cluster` does) and reads no clock, so the same object always gets the same verdict.
//! [`observe`] reads an object (and a stuck workload's pods) through the [`HealthView`] trait and
//! judges it.
//! The semantics follow kstatus (sigs.k8s.io/cli-utils/pkg/kstatus):
//!
//! - [`generic`]: rules every object obeys: deletion, observedGeneration, `Reconciling`/`Stalled`,
//!   and the `Ready` condition for kinds without a rule of their own.
//! - [`workloads`]: Deployment, StatefulSet, DaemonSet, ReplicaSet, Pod, Job, CronJob.
//! - [`resources`]: PVC, Service, Ingress, PodDisruptionBudget, CRD, Namespace, APIService.
//! - [`custom`]: user rules per group/kind written in CEL ([`HealthRules`]), checked before built-ins.
//! - [`summary`]: many verdicts → one, with what is still progressing and why (for `--wait`).
//!
//! [`assess`] is the entry point for built-in rules; [`HealthRules::assess`] adds custom rules:
//!
//! ```
//! use capstan_health::{Health, HealthRules, HealthStatus};
//! use kube::api::DynamicObject;
//!
//! let rules = HealthRules::from_rules([(
//!     "db.example.com",
//!     "Database",
//!     r#"has(object.status.phase) && object.status.phase == "Ready""#,
//! )])?;
//! let database: DynamicObject = serde_json::from_value(serde_json::json!({
//!     "apiVersion": "db.example.com/v1", "kind": "Database",
//!     "metadata": {"name": "orders"}, "status": {"phase": "Ready"}
//! }))?;
//! assert_eq!(rules.assess(&database).status, HealthStatus::Current);
//!
//! let deployment: DynamicObject = serde_json::from_value(serde_json::json!({
//!     "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
//!     "spec": {"replicas": 3}, "status": {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}
//! }))?;
//! assert_eq!(rules.assess(&deployment), Health::in_progress("2/3 replicas available"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod custom;
mod error;
mod fields;
pub mod generic;
pub mod observe;
pub mod resources;
pub mod summary;
pub mod workloads;

use std::fmt;

use kube::api::DynamicObject;
use serde::{Deserialize, Serialize};

pub use custom::HealthRules;
pub use error::HealthError;
pub use observe::{HealthView, observe};
pub use summary::{Summary, summarize};

/// Where an object stands, in kstatus's vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HealthStatus {
    /// The object's controllers did what its spec asks: done.
    Current,
    /// Not there yet, but nothing says it will not get there.
    InProgress,
    /// The object or its controller reports it will not get there without a change.
    Failed,
    /// `metadata.deletionTimestamp` is set: it is going away.
    Terminating,
    /// The object does not exist (the engine's verdict after a 404; [`assess`] never returns it).
    NotFound,
    /// The status cannot be told: an unknown Pod phase, or a custom rule that could not be evaluated.
    Unknown,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Current => "Current",
            HealthStatus::InProgress => "InProgress",
            HealthStatus::Failed => "Failed",
            HealthStatus::Terminating => "Terminating",
            HealthStatus::NotFound => "NotFound",
            HealthStatus::Unknown => "Unknown",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verdict and the human reason for it ("Available: 1/2", "Pod unschedulable: 0/2 nodes ...").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    pub message: String,
}

impl Health {
    pub fn new(status: HealthStatus, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub fn current(message: impl Into<String>) -> Self {
        Self::new(HealthStatus::Current, message)
    }
    pub fn in_progress(message: impl Into<String>) -> Self {
        Self::new(HealthStatus::InProgress, message)
    }
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(HealthStatus::Failed, message)
    }
    /// For the engine, when the object it waits for is gone.
    pub fn not_found() -> Self {
        Self::new(HealthStatus::NotFound, "object not found")
    }

    pub fn is_current(&self) -> bool {
        self.status == HealthStatus::Current
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.status)
        } else {
            write!(f, "{}: {}", self.status, self.message)
        }
    }
}

/// The built-in verdict for one object: generic rules first (deletion, generation, Reconciling,
/// Stalled), then the rule of its kind, then the `Ready` condition; anything else is Current once it
/// exists.
///
/// The object must carry `apiVersion` and `kind` (`object.types`). A `get` returns them, but the items
/// of a `list` do not: set them from the `ApiResource` listed. Without them the verdict is `Unknown`,
/// because a Pod judged as "some object" would be Current as soon as it exists.
pub fn assess(object: &DynamicObject) -> Health {
    let (group, kind) = fields::group_kind(object);
    if kind.is_empty() {
        return Health::new(
            HealthStatus::Unknown,
            "object has no apiVersion/kind, so its health rule cannot be chosen",
        );
    }
    if let Some(health) = generic::preconditions(object) {
        return health;
    }
    if let Some(health) = workloads::assess(group, kind, object) {
        return health;
    }
    if let Some(health) = resources::assess(group, kind, object) {
        return health;
    }
    generic::ready_condition(object).unwrap_or_else(|| Health::current("Resource exists"))
}
