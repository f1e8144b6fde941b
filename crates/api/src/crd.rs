//! The controller's API: the `GitRepository` and `Application` custom resources (group `capstan.dev`,
//! version `v1alpha1`). The CRDs are generated from these types ([`crds`]), so the schema, the
//! printer columns and the validation rules live next to the fields they describe. An
//! `Application`'s spec embeds the [`AppSpec`](crate::AppSpec) parts ([`ApplicationSpec::app_spec`]).

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::closed::closed_set;
use crate::duration;
use crate::spec::{AppSpec, Source};
pub use crate::spec::{
    ConflictPolicy, Destination, HealthCheck, HelmSpec, IgnoreDifference, JsonnetSpec,
    JsonnetVariable, Propagation, RenderSpec, Renderer, Retry, SourceKind, SourceReference,
    SyncPolicy,
};

pub const GROUP: &str = "capstan.dev";
/// `capstan app sync` sets it to a timestamp; a new value asks for a sync now.
pub const REQUESTED_AT_ANNOTATION: &str = "capstan.dev/requested-at";
/// `capstan app rollback --to REV` pins the app to that commit until `capstan app unpin`.
pub const PIN_ANNOTATION: &str = "capstan.dev/pinned-revision";

/// A Git repository the controller fetches on an interval; Applications render from its artifact.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "capstan.dev",
    version = "v1alpha1",
    kind = "GitRepository",
    namespaced,
    status = "GitRepositoryStatus",
    shortname = "gitrepo",
    category = "capstan",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.artifact.revision"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositorySpec {
    /// Repository URL: https://, http:// (loopback only), ssh://, git@host:path, git:// or file://.
    #[schemars(regex(
        pattern = r"^(https?://|ssh://|git://|file://|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:).+"
    ))]
    pub url: String,
    /// What to check out; the default branch's head when empty.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<GitReference>,
    /// How often to look for a new commit (one ref listing; a fetch only when refs moved).
    #[serde(default = "default_source_interval", with = "duration::serde_text")]
    #[schemars(schema_with = "duration::schema")]
    pub interval: Duration,
    /// Limit for one fetch.
    #[serde(default = "default_timeout", with = "duration::serde_text")]
    #[schemars(schema_with = "duration::schema")]
    pub timeout: Duration,
    /// A Secret in the same namespace: `username` + `password` (https basic auth), `bearerToken`, or
    /// `identity` (an SSH private key), `identity.passphrase` and `known_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Refuse commits (or tags) without a valid signature from a trusted key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verification>,
    #[serde(default)]
    pub suspend: bool,
}

/// At most one of branch, tag and semver; commit alone pins an exact commit, and with a branch pins
/// that branch's commit.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.branch), has(self.tag), has(self.semver)].filter(x, x).size() <= 1",
     "message": "set at most one of branch, tag and semver"},
    {"rule": "!has(self.commit) || self.commit.matches('^[0-9a-f]{40}$')",
     "message": "commit must be a full 40-hex SHA-1"}
]))]
pub struct GitReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A semver range over tags, e.g. `>=1.2 <2`: the highest matching tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// A Secret whose `allowed_signers` key holds SSH allowed signers and whose `*.asc` keys hold
    /// OpenPGP public keys.
    pub secret_ref: LocalObjectReference,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
pub struct LocalObjectReference {
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositoryStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<ArtifactStatus>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactStatus {
    /// `<ref>@sha1:<commit>`.
    pub revision: String,
    pub commit: String,
    /// A digest over the checked-out tree.
    pub digest: String,
    /// When this revision was first fetched (RFC 3339).
    pub last_update_time: String,
}

/// A kstatus-compatible condition.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// An app: a path in a GitRepository's artifact, rendered and kept in sync with a namespace.
#[derive(CustomResource, Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "capstan.dev",
    version = "v1alpha1",
    kind = "Application",
    namespaced,
    status = "ApplicationStatus",
    shortname = "app",
    category = "capstan",
    printcolumn = r#"{"name":"Sync","type":"string","jsonPath":".status.sync.status"}"#,
    printcolumn = r#"{"name":"Health","type":"string","jsonPath":".status.health.status"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.sync.revision"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].message"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    pub source_ref: SourceReference,
    /// The app's directory inside the repository.
    #[serde(default = "default_path")]
    #[schemars(length(max = 512), extend("x-kubernetes-validations" = [
        {"rule": "!self.startsWith('/')", "message": "path must be relative to the repository root"},
        {"rule": "!self.matches('(^|/)[.][.](/|$)')", "message": "path must not contain '..'"}
    ]))]
    pub path: String,
    #[serde(default)]
    pub render: RenderSpec,
    pub destination: Destination,
    #[serde(default)]
    pub sync_policy: SyncPolicy,
    /// Apply as this ServiceAccount of the Application's namespace (impersonation), so the app can
    /// only do what that account may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Applications (same namespace unless given) that must be Ready before this one syncs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<DependencyReference>,
    /// Custom health: CEL expressions per group/kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheck>,
    /// Fields the diff ignores (and a sync leaves alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_differences: Vec<IgnoreDifference>,
    #[serde(default)]
    pub suspend: bool,
    /// Limit for one reconciliation (fetch, render, sync and health).
    #[serde(default = "default_app_timeout", with = "duration::serde_text")]
    #[schemars(schema_with = "duration::schema")]
    pub timeout: Duration,
}

impl ApplicationSpec {
    /// The application this spec describes (the controller-only fields aside: service account,
    /// dependencies, suspend, timeout).
    pub fn app_spec(&self) -> AppSpec {
        AppSpec {
            source: Source::Repository {
                reference: self.source_ref.clone(),
                path: self.path.clone(),
            },
            render: self.render.clone(),
            destination: self.destination.clone(),
            sync_policy: self.sync_policy.clone(),
            health_checks: self.health_checks.clone(),
            ignore_differences: self.ignore_differences.clone(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DependencyReference {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled (kstatus).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<InventorySummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_plan: Option<PlanSummary>,
    /// Live objects that differ from Git, with the managers that changed them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<DriftedObject>,
    /// The last 10 syncs, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// The commit the app is pinned to (rollback), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_revision: Option<String>,
    /// The last `capstan.dev/requested-at` value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_request: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    pub status: SyncState,
    /// The revision last applied (or compared, when not automated).
    pub revision: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    pub status: HealthState,
    #[serde(default)]
    pub message: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InventorySummary {
    pub objects: usize,
    /// `kind: count`, sorted by kind.
    #[serde(default)]
    pub kinds: std::collections::BTreeMap<String, usize>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub unchanged: usize,
    pub prune: usize,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DriftedObject {
    /// `group/kind namespace/name`.
    pub object: String,
    /// Field managers that changed fields Git declares.
    #[serde(default)]
    pub managers: Vec<String>,
    #[serde(default)]
    pub fields: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub revision: String,
    pub time: String,
    pub result: SyncResult,
    /// What started the sync.
    pub trigger: Trigger,
    #[serde(default)]
    pub message: String,
}

fn default_source_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_app_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_path() -> String {
    ".".into()
}

closed_set! {
    /// Whether the live objects equal Git.
    #[derive(Default)]
    pub enum SyncState {
        Synced = "Synced",
        OutOfSync = "OutOfSync",
        #[default]
        Unknown = "Unknown",
    }
}

closed_set! {
    /// The app's health, in kstatus's vocabulary (capstan-health's verdicts).
    #[derive(Default)]
    pub enum HealthState {
        Current = "Current",
        InProgress = "InProgress",
        Failed = "Failed",
        Terminating = "Terminating",
        NotFound = "NotFound",
        #[default]
        Unknown = "Unknown",
    }
}

closed_set! {
    /// How a sync in the history ended.
    #[derive(Default)]
    pub enum SyncResult {
        #[default]
        Succeeded = "Succeeded",
        Failed = "Failed",
    }
}

closed_set! {
    /// What started a reconciliation, as recorded in the history.
    #[derive(Default)]
    pub enum Trigger {
        /// `capstan app sync` (the requested-at annotation changed).
        Manual = "manual",
        /// `capstan app rollback` pinned a new revision.
        Rollback = "rollback",
        /// The Application's spec changed.
        Spec = "spec",
        /// The source has a new revision.
        Source = "source",
        /// A live object differs from Git while nothing else changed.
        Drift = "drift",
        /// A dependency became Ready.
        Dependency = "dependency",
        /// The interval passed with nothing else to do.
        #[default]
        Interval = "interval",
    }
}

/// The CRDs, as `capstan install` writes them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![GitRepository::crd(), Application::crd()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_carry_validation_and_columns() {
        let crds = serde_json::to_value(crds()).expect("CRDs serialize");
        let text = crds.to_string();
        assert!(text.contains("set at most one of branch, tag and semver"));
        assert!(text.contains("path must not contain '..'"));
        assert!(text.contains("\"name\":\"Sync\""));
        assert_eq!(crds[1]["spec"]["names"]["shortNames"][0], "app");
    }
}
