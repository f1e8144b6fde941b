//! The app file (`capstan.yaml`, docs/app-file.md): one app's identity and [`AppSpec`], so a sync is
//! reproducible from a file in Git. A serde view of [`AppSpec`], like the `Application` CRD; its
//! source is a directory or a Git repository the CLI fetches itself, instead of a `sourceRef`.

use serde::{Deserialize, Serialize};

use crate::spec::{
    AppSpec, Destination, GitSource, HealthCheck, IgnoreDifference, RenderSpec, Source, SyncPolicy,
};

pub const API_VERSION: &str = "capstan.dev/v1alpha1";
pub const KIND: &str = "App";

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppFile {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: AppFileSpec,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    /// Where the app's inventory lives; defaults to the destination namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The same fields, names and meaning as the `Application` CRD's spec, but `source`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppFileSpec {
    pub source: AppFileSource,
    #[serde(default)]
    pub render: RenderSpec,
    pub destination: Destination,
    #[serde(default)]
    pub sync_policy: SyncPolicy,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheck>,
    /// Fields of existing objects that are neither compared nor applied; see capstan-plan's `ignore`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_differences: Vec<IgnoreDifference>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppFileSource {
    /// A directory, relative to the app file (with `git`: a directory inside the repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// A Git repository; the app is `path` inside it at `ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
}

/// What is wrong with an app file's text.
#[derive(Debug, thiserror::Error)]
pub enum AppFileError {
    #[error("{0}")]
    Yaml(String),
    #[error("expected apiVersion {API_VERSION} and kind {KIND}, found {api_version} {kind}")]
    WrongKind { api_version: String, kind: String },
}

impl AppFile {
    /// Reads an app file's text (YAML); unknown fields are errors.
    pub fn parse(text: &str) -> Result<Self, AppFileError> {
        let file: AppFile =
            serde_saphyr::from_str(text).map_err(|e| AppFileError::Yaml(e.to_string()))?;
        if file.api_version != API_VERSION || file.kind != KIND {
            return Err(AppFileError::WrongKind {
                api_version: file.api_version,
                kind: file.kind,
            });
        }
        Ok(file)
    }

    /// Where the app's inventory lives.
    pub fn namespace(&self) -> &str {
        self.metadata
            .namespace
            .as_deref()
            .unwrap_or(&self.spec.destination.namespace)
    }

    /// The application this file describes.
    pub fn app_spec(&self) -> AppSpec {
        let spec = &self.spec;
        let source = match (&spec.source.git, &spec.source.path) {
            (Some(git), path) => Source::Git {
                git: git.clone(),
                path: path.clone().unwrap_or_else(|| ".".into()),
            },
            (None, Some(path)) => Source::Directory { path: path.clone() },
            (None, None) => Source::Unset,
        };
        AppSpec {
            source,
            render: spec.render.clone(),
            destination: spec.destination.clone(),
            sync_policy: spec.sync_policy.clone(),
            health_checks: spec.health_checks.clone(),
            ignore_differences: spec.ignore_differences.clone(),
        }
    }
}
