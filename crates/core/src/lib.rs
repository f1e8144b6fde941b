//! Capstan's shared vocabulary, free of I/O: how an object is named across stages ([`ObjectRef`]),
//! how an object is marked as belonging to an app ([`ownership`]), how a git remote URL is read
//! ([`git_url`]), the pipeline's stages as tracing spans ([`stage`]), the API words the stages
//! and the cluster adapter share ([`api`]: `ClusterError`, `FIELD_MANAGER`, `Ownership`, …), and
//! Kubernetes' rules for names and namespaces with the escaping of URL path segments ([`names`]).

pub mod api;
pub mod git_url;
pub mod names;
pub mod ownership;
pub mod stage;

use std::fmt;

use kube::api::DynamicObject;
use serde::{Deserialize, Serialize};

/// Identifies one Kubernetes object across stages: plan, apply, inventory and health all key by it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// API group; empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// `None` for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

/// Why an object cannot be identified.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ObjectError {
    #[error("object has no apiVersion")]
    MissingApiVersion,
    #[error("object has no kind")]
    MissingKind,
    #[error("{kind} has no metadata.name (generateName is not supported: it cannot be tracked)")]
    MissingName { kind: String },
}

impl ObjectRef {
    pub fn from_object(object: &DynamicObject) -> Result<Self, ObjectError> {
        let types = object
            .types
            .as_ref()
            .ok_or(ObjectError::MissingApiVersion)?;
        if types.api_version.is_empty() {
            return Err(ObjectError::MissingApiVersion);
        }
        if types.kind.is_empty() {
            return Err(ObjectError::MissingKind);
        }
        let (group, version) = split_api_version(&types.api_version);
        let name = object
            .metadata
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ObjectError::MissingName {
                kind: types.kind.clone(),
            })?;
        Ok(Self {
            group: group.to_string(),
            version: version.to_string(),
            kind: types.kind.clone(),
            namespace: object.metadata.namespace.clone(),
            name,
        })
    }

    /// `apps/v1` or `v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Group and kind without version: two versions of one object are the same object.
    pub fn group_kind(&self) -> (&str, &str) {
        (&self.group, &self.kind)
    }
}

/// An annotation's value, trimmed; `None` when absent.
pub fn annotation<'a>(object: &'a DynamicObject, key: &str) -> Option<&'a str> {
    object
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(|v| v.trim())
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

impl fmt::Display for ObjectRef {
    /// `Deployment.apps shop/web`, `Namespace shop`: kind.group like kubectl, then namespace/name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        match &self.namespace {
            Some(ns) => write!(f, " {ns}/{}", self.name),
            None => write!(f, " {}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: serde_json::Value) -> DynamicObject {
        serde_json::from_value(value).expect("valid object")
    }

    #[test]
    fn names_namespaced_and_cluster_objects() {
        let deployment = object(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop"}
        }));
        let r = ObjectRef::from_object(&deployment).expect("ref");
        assert_eq!((r.group.as_str(), r.version.as_str()), ("apps", "v1"));
        assert_eq!(r.to_string(), "Deployment.apps shop/web");
        assert_eq!(r.api_version(), "apps/v1");

        let namespace = object(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}
        }));
        let r = ObjectRef::from_object(&namespace).expect("ref");
        assert_eq!(r.group, "");
        assert_eq!(r.to_string(), "Namespace shop");
    }

    #[test]
    fn refuses_objects_without_identity() {
        let nameless = object(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "x-"}
        }));
        assert_eq!(
            ObjectRef::from_object(&nameless),
            Err(ObjectError::MissingName {
                kind: "ConfigMap".into()
            })
        );
        let untyped = object(serde_json::json!({"metadata": {"name": "x"}}));
        assert_eq!(
            ObjectRef::from_object(&untyped),
            Err(ObjectError::MissingApiVersion)
        );
    }
}
