//! The controller's API: the `GitRepository` and `Application` custom resources (group `capstan.dev`,
//! version `v1alpha1`). The CRDs are generated from these types ([`crds`]), so the schema, the
//! printer columns and the validation rules live next to the fields they describe.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    #[serde(default = "default_source_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: String,
    /// Limit for one fetch.
    #[serde(default = "default_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub timeout: String,
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
    #[serde(default = "default_app_timeout")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub timeout: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SourceReference {
    /// Only GitRepository for now.
    #[serde(default = "default_source_kind")]
    #[schemars(extend("enum" = ["GitRepository"]))]
    pub kind: String,
    pub name: String,
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
pub struct Destination {
    /// Namespace for namespaced objects that do not name one.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RenderSpec {
    /// plain, kustomize, helm or jsonnet; detected when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["plain", "kustomize", "helm", "jsonnet"]))]
    pub renderer: Option<String>,
    /// Plain directories: globs of files to include / exclude.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonnet: Option<JsonnetSpec>,
}

/// Jsonnet (with `renderer: jsonnet`), as in the app file and Argo CD.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JsonnetSpec {
    /// The entry file in the app directory; default every `*.jsonnet` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ext_vars: Vec<JsonnetVariable>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tlas: Vec<JsonnetVariable>,
    /// Library directories, relative to the repository root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jpath: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JsonnetVariable {
    pub name: String,
    pub value: String,
    /// Evaluate `value` as Jsonnet code instead of passing it as a string.
    #[serde(default)]
    pub code: bool,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HelmSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// Values files, relative to the chart, inside the repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_files: Vec<String>,
    /// Inline values (YAML).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Sync new revisions and spec changes without anyone asking; otherwise only report OutOfSync.
    #[serde(default)]
    pub automated: bool,
    /// Delete objects that left Git (only those this app created).
    #[serde(default)]
    pub prune: bool,
    /// Re-apply when a live object drifts from Git (needs automated).
    #[serde(default)]
    pub self_heal: bool,
    /// How often to re-check the app even without events.
    #[serde(default = "default_app_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: String,
    #[serde(default)]
    pub retry: Retry,
    /// TakeOwnership (Git wins: force apply) or Fail (a conflict stops the sync naming the manager).
    #[serde(default = "default_conflicts")]
    #[schemars(extend("enum" = ["TakeOwnership", "Fail"]))]
    pub conflicts: String,
    /// Delete + create on immutable-field changes for every object.
    #[serde(default)]
    pub replace: bool,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self {
            automated: false,
            prune: false,
            self_heal: false,
            interval: default_app_interval(),
            retry: Retry::default(),
            conflicts: default_conflicts(),
            replace: false,
        }
    }
}

/// Backoff after a failed reconciliation: `backoff × factor^n`, capped at `maxBackoff`.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Retry {
    #[serde(default = "default_backoff")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub backoff: String,
    #[serde(default = "default_factor")]
    #[schemars(range(min = 1, max = 10))]
    pub factor: u32,
    #[serde(default = "default_max_backoff")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub max_backoff: String,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            backoff: default_backoff(),
            factor: default_factor(),
            max_backoff: default_max_backoff(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    /// CEL over `object`: a bool (true → Current) or `{"status": ..., "message": ...}`.
    pub cel: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreDifference {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// RFC 6901 pointers, e.g. `/spec/replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_pointers: Vec<String>,
    /// Fields owned by these field managers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managers: Vec<String>,
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
    /// Synced, OutOfSync or Unknown.
    pub status: String,
    /// The revision last applied (or compared, when not automated).
    pub revision: String,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatus {
    /// Current, InProgress, Failed, NotFound or Unknown.
    pub status: String,
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
    /// Succeeded or Failed.
    pub result: String,
    /// What started the sync: source, spec, drift, manual, rollback, dependency or interval.
    pub trigger: String,
    #[serde(default)]
    pub message: String,
}

fn default_source_interval() -> String {
    "1m".into()
}
fn default_timeout() -> String {
    "60s".into()
}
fn default_app_timeout() -> String {
    "5m".into()
}
fn default_app_interval() -> String {
    "5m".into()
}
fn default_path() -> String {
    ".".into()
}
fn default_source_kind() -> String {
    "GitRepository".into()
}
fn default_conflicts() -> String {
    "TakeOwnership".into()
}
fn default_backoff() -> String {
    "5s".into()
}
fn default_factor() -> u32 {
    2
}
fn default_max_backoff() -> String {
    "5m".into()
}

/// The CRDs, as `capstan install` writes them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![GitRepository::crd(), Application::crd()]
}

/// Parses durations like `90s`, `1m30s`, `500ms`, `2h` (the CRD pattern admits only these).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("{text:?} is not a duration like 30s, 5m or 1h30m");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let number: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            _ => return Err(invalid()),
        };
        total += Duration::try_from_secs_f64(seconds).map_err(|_| invalid())?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }

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
