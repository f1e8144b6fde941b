//! [`AppSpec`]: what an application is, once. The app file (`capstan.yaml`, [`crate::app_file`]) and
//! the `Application` CRD ([`crate::crd`]) are serde views of it: they embed these types and differ
//! only in where the source comes from and in what a front end alone needs.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::closed::closed_set;
use crate::duration;

/// One application: where its manifests come from, how they render, where they go, how a sync
/// behaves, and which fields and health rules are its own.
#[derive(Clone, Debug, PartialEq)]
pub struct AppSpec {
    pub source: Source,
    pub render: RenderSpec,
    pub destination: Destination,
    pub sync_policy: SyncPolicy,
    pub health_checks: Vec<HealthCheck>,
    pub ignore_differences: Vec<IgnoreDifference>,
}

/// Where an app's manifests come from; `path` is the app's directory inside it.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A `GitRepository` in the app's namespace, fetched by the controller (`spec.sourceRef`).
    Repository {
        reference: SourceReference,
        path: String,
    },
    /// A Git repository the front end fetches itself (the app file's `spec.source.git`).
    Git { git: GitSource, path: String },
    /// A local directory, relative to the app file (`spec.source.path` without `git`).
    Directory { path: String },
    /// Not given: the command line names the directory.
    Unset,
}

closed_set! {
    /// The kinds a `sourceRef` may name.
    pub enum SourceKind {
        GitRepository = "GitRepository",
    }
}

/// A source object in the app's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceReference {
    #[serde(default = "default_source_kind")]
    pub kind: SourceKind,
    pub name: String,
}

fn default_source_kind() -> SourceKind {
    SourceKind::GitRepository
}

/// A Git repository fetched by the CLI (app file only; the controller has `GitRepository`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitSource {
    pub url: String,
    /// BRANCH, tag:NAME, semver:RANGE, commit:SHA, BRANCH@SHA.
    #[serde(default = "default_ref", rename = "ref")]
    pub reference: String,
    /// SSH private key file (relative to the app file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<String>,
    /// File holding the SSH key's passphrase (relative to the app file); needs `sshKey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key_passphrase_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<String>,
}

fn default_ref() -> String {
    "main".into()
}

closed_set! {
    /// How a directory becomes objects (capstan-render); detected when absent (Jsonnet never is).
    pub enum Renderer {
        Plain = "plain" | "directory",
        Kustomize = "kustomize",
        Helm = "helm",
        Jsonnet = "jsonnet",
    }
}

/// How the source directory becomes objects; see capstan-render.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenderSpec {
    /// plain, kustomize, helm or jsonnet; detected when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renderer: Option<Renderer>,
    /// Plain directories: globs of files to include / exclude, relative to the app directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonnet: Option<JsonnetSpec>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HelmSpec {
    /// Default: the chart directory's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// Values files, relative to the chart, inside the repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_files: Vec<String>,
    /// Inline values (YAML), applied after the files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
}

/// Jsonnet (with `renderer: jsonnet`), named like Argo CD's `directory.jsonnet` (`libs` is `jpath`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonnetSpec {
    /// The entry file in the app directory; default every `*.jsonnet` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ext_vars: Vec<JsonnetVariable>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tlas: Vec<JsonnetVariable>,
    /// Library directories, relative to the repository root; the last one is searched first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jpath: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonnetVariable {
    pub name: String,
    pub value: String,
    /// Evaluate `value` as Jsonnet code instead of passing it as a string.
    #[serde(default)]
    pub code: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// Namespace for namespaced objects that do not name one.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub namespace: String,
}

closed_set! {
    /// Who wins when another field manager owns a field Git sets.
    #[derive(Default)]
    pub enum ConflictPolicy {
        /// Git wins: the apply is forced and takes the field over.
        #[default]
        TakeOwnership = "TakeOwnership" | "takeOwnership",
        /// The sync stops, naming the manager and the fields.
        Fail = "Fail" | "fail",
    }
}

closed_set! {
    /// How prune deletes (Kubernetes' propagation policies).
    #[derive(Default)]
    pub enum Propagation {
        #[default]
        Background = "Background" | "background",
        Foreground = "Foreground" | "foreground",
        Orphan = "Orphan" | "orphan",
    }
}

/// How and when an app syncs. The CLI uses `prune`, `allowEmpty`, `conflicts`, `replace` and
/// `propagation`; the controller all of them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
    /// Allow a sync with no objects to prune everything the app owns.
    #[serde(default)]
    pub allow_empty: bool,
    /// How often to re-check the app even without events.
    #[serde(default = "default_app_interval", with = "duration::serde_text")]
    #[schemars(schema_with = "duration::schema")]
    pub interval: Duration,
    #[serde(default)]
    pub retry: Retry,
    /// TakeOwnership (Git wins: force apply) or Fail (a conflict stops the sync naming the manager).
    #[serde(default)]
    pub conflicts: ConflictPolicy,
    /// Delete + create on immutable-field changes for every object.
    #[serde(default)]
    pub replace: bool,
    /// Background, Foreground or Orphan, for prune.
    #[serde(default)]
    pub propagation: Propagation,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self {
            automated: false,
            prune: false,
            self_heal: false,
            allow_empty: false,
            interval: default_app_interval(),
            retry: Retry::default(),
            conflicts: ConflictPolicy::default(),
            replace: false,
            propagation: Propagation::default(),
        }
    }
}

fn default_app_interval() -> Duration {
    Duration::from_secs(300)
}

/// Backoff after a failed reconciliation: `backoff × factor^n`, capped at `maxBackoff`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    #[serde(default = "default_backoff", with = "duration::serde_text")]
    #[schemars(schema_with = "duration::schema")]
    pub backoff: Duration,
    #[serde(default = "default_factor")]
    #[schemars(range(min = 1, max = 10))]
    pub factor: u32,
    #[serde(default = "default_max_backoff", with = "duration::serde_text")]
    #[schemars(schema_with = "duration::schema")]
    pub max_backoff: Duration,
}

impl Retry {
    /// The wait before attempt `failures + 1` after `failures` consecutive failures (at least one).
    pub fn backoff_after(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        let multiplier = u64::from(self.factor.max(1)).saturating_pow(exponent);
        self.backoff
            .saturating_mul(u32::try_from(multiplier).unwrap_or(u32::MAX))
            .min(self.max_backoff)
    }
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

fn default_backoff() -> Duration {
    Duration::from_secs(5)
}
fn default_factor() -> u32 {
    2
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}

/// Custom health for one group/kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    /// CEL over `object`: a bool (true → Current) or `{"status": ..., "message": ...}`.
    pub cel: String,
}

/// One rule of `ignoreDifferences`: fields of existing objects that plan and sync leave alone
/// (capstan-plan's `ignore`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IgnoreDifference {
    /// API group (`apps`; `""` or absent for the core group; `*` for any).
    #[serde(default)]
    pub group: String,
    /// Kind (`Deployment`; `*` for any).
    pub kind: String,
    /// Only the object of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only objects in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// RFC 6901 pointers to the ignored fields, e.g. `/spec/replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_pointers: Vec<String>,
    /// Field managers whose fields (in the live object) are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managers: Vec<String>,
}

impl std::fmt::Display for IgnoreDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.kind)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        if let Some(namespace) = &self.namespace {
            write!(f, " in namespace {namespace}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_factor_and_stops_at_the_cap() {
        let retry = Retry {
            backoff: Duration::from_secs(5),
            factor: 2,
            max_backoff: Duration::from_secs(60),
        };
        let table = [(1, 5), (2, 10), (3, 20), (4, 40), (5, 60), (50, 60), (0, 5)];
        for (failures, secs) in table {
            assert_eq!(
                retry.backoff_after(failures),
                Duration::from_secs(secs),
                "{failures}"
            );
        }
        let flat = Retry {
            factor: 1,
            ..retry.clone()
        };
        assert_eq!(flat.backoff_after(9), Duration::from_secs(5));
    }

    #[test]
    fn closed_sets_read_their_names_and_aliases_and_refuse_others() {
        assert_eq!("fail".parse::<ConflictPolicy>(), Ok(ConflictPolicy::Fail));
        assert_eq!("Fail".parse::<ConflictPolicy>(), Ok(ConflictPolicy::Fail));
        assert_eq!("directory".parse::<Renderer>(), Ok(Renderer::Plain));
        let err = "helmfile".parse::<Renderer>().expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "\"helmfile\" is not one of plain, kustomize, helm, jsonnet"
        );
        let policy: SyncPolicy =
            serde_json::from_str(r#"{"conflicts":"takeOwnership","propagation":"orphan"}"#)
                .expect("aliases");
        assert_eq!(policy.conflicts, ConflictPolicy::TakeOwnership);
        assert_eq!(policy.propagation, Propagation::Orphan);
        assert_eq!(
            serde_json::to_value(&policy).expect("json")["conflicts"],
            "TakeOwnership"
        );
        assert!(serde_json::from_str::<SyncPolicy>(r#"{"conflicts":"win"}"#).is_err());
    }

    #[test]
    fn durations_in_a_policy_read_and_write_in_the_one_grammar() {
        let policy: SyncPolicy = serde_json::from_str(
            r#"{"interval":"1h30m","retry":{"backoff":"500ms","maxBackoff":"2m"}}"#,
        )
        .expect("policy");
        assert_eq!(policy.interval, Duration::from_secs(5400));
        assert_eq!(policy.retry.backoff, Duration::from_millis(500));
        let json = serde_json::to_value(&policy).expect("json");
        assert_eq!(json["interval"], "1h30m");
        assert_eq!(json["retry"]["maxBackoff"], "2m");
        let err = serde_json::from_str::<SyncPolicy>(r#"{"interval":"5"}"#).expect_err("no unit");
        assert!(err.to_string().contains("\"5\" is not a duration"), "{err}");
    }
}
