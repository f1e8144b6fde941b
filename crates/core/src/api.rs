//! The words the stages and the cluster adapter share about the Kubernetes API: the error every
//! cluster request can end in ([`ClusterError`]), the field manager, and the choices an apply or a
//! delete takes ([`Ownership`], [`PropagationPolicy`], [`Deleted`]). The stage crates (plan, apply,
//! inventory, health) state what they need from a cluster as traits in these words; `capstan-cluster`
//! implements them, so no stage depends on the crate that talks to the API server. Types only, no I/O.

use std::path::PathBuf;

use kube::core::response::StatusCause;

pub use kube::api::PropagationPolicy;

/// The field manager name Capstan uses for every server-side apply.
pub const FIELD_MANAGER: &str = "capstan";

/// How an apply treats fields another manager owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Git wins: take every declared field back from whoever changed it.
    Force,
    /// Stop with a conflict error naming the other manager and the fields.
    Respect,
}

/// What a delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// The server accepted the delete (the object may still be finalizing).
    Requested,
    /// It was already gone.
    AlreadyGone,
}

/// Why Capstan could not reach or query the cluster. Each variant names the kubeconfig, context or
/// server it is about, so a user knows which file or flag to fix.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "no kubeconfig found: {searched} does not exist and Capstan is not running in a cluster \
         (pass --kubeconfig or set KUBECONFIG)"
    )]
    NoKubeconfig { searched: String },

    #[error("kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },

    #[error("context {context:?} is not defined in {kubeconfig}; defined contexts: {available}")]
    UnknownContext {
        context: String,
        kubeconfig: String,
        available: String,
    },

    #[error("kubeconfig {kubeconfig}, context {context}: {source}")]
    Config {
        kubeconfig: String,
        context: String,
        #[source]
        source: kube::config::KubeconfigError,
    },

    #[error("in-cluster configuration: {0}")]
    InCluster(#[source] kube::config::InClusterError),

    #[error("cannot build a client for {server}: {source}")]
    Client {
        server: String,
        #[source]
        source: kube::Error,
    },

    #[error("{what} on {server} failed: {source}")]
    Request {
        server: String,
        what: String,
        #[source]
        source: kube::Error,
    },

    #[error("the API server does not serve kind {kind} in {api_version} (is its CRD installed?)")]
    UnknownKind { api_version: String, kind: String },

    #[error("{object} is namespaced but has no namespace")]
    MissingNamespace { object: String },

    /// A name, namespace or apiVersion the API server would refuse, or that cannot be one URL path
    /// segment (`capstan_core::names`): refused before any request carries it.
    #[error("{object}: {field}: {source}")]
    InvalidName {
        object: String,
        /// `metadata.name`, `metadata.namespace` or `apiVersion`.
        field: &'static str,
        #[source]
        source: crate::names::NameError,
    },

    #[error("invalid object: {source}")]
    Object {
        #[source]
        source: crate::ObjectError,
    },

    /// The API server refused the request; `message` is its own explanation (field paths included).
    #[error("{verb} {object}: {message} ({reason}, HTTP {code})")]
    Rejected {
        verb: String,
        object: String,
        code: u16,
        reason: String,
        message: String,
        /// The status's `details.causes` (field, reason, message per field), empty when it had none.
        causes: Vec<StatusCause>,
    },
}

/// The message apimachinery's `ValidateImmutableField` puts on each cause (`field.Invalid(path, value,
/// FieldImmutableErrorMsg)` in `k8s.io/apimachinery/pkg/api/validation`). Kubernetes has no reason
/// code for "immutable": the cause's type is the generic `FieldValueInvalid`, so this constant, part of
/// apimachinery's API, is the only marker. It is matched on one cause's message, never on the whole
/// error text.
pub const FIELD_IMMUTABLE_MESSAGE: &str = "field is immutable";

/// Whether one status cause says its field is immutable (see [`FIELD_IMMUTABLE_MESSAGE`]).
pub fn is_immutable_cause(cause: &StatusCause) -> bool {
    cause.reason == "FieldValueInvalid" && cause.message.ends_with(FIELD_IMMUTABLE_MESSAGE)
}

impl ClusterError {
    /// The API server's status code and reason, when the API server answered with a status (as a
    /// refusal, or inside a transport-level error that carries one).
    pub fn status(&self) -> Option<(u16, &str)> {
        match self {
            ClusterError::Rejected { code, reason, .. } => Some((*code, reason.as_str())),
            ClusterError::Request {
                source: kube::Error::Api(status),
                ..
            }
            | ClusterError::Client {
                source: kube::Error::Api(status),
                ..
            } => Some((status.code, status.reason.as_str())),
            _ => None,
        }
    }

    /// RBAC (or an admission webhook) refused: HTTP 403 `Forbidden`.
    pub fn is_forbidden(&self) -> bool {
        self.status()
            .is_some_and(|(code, reason)| code == 403 || reason == "Forbidden")
    }

    /// An optimistic-concurrency or field-ownership conflict: HTTP 409 `Conflict`.
    pub fn is_conflict(&self) -> bool {
        self.status()
            .is_some_and(|(code, reason)| code == 409 && reason != "AlreadyExists")
    }

    /// A create of something that exists: HTTP 409 `AlreadyExists`.
    pub fn is_already_exists(&self) -> bool {
        self.status()
            .is_some_and(|(code, reason)| code == 409 && reason == "AlreadyExists")
    }

    /// HTTP 404 `NotFound`.
    pub fn is_not_found(&self) -> bool {
        self.status()
            .is_some_and(|(code, reason)| code == 404 || reason == "NotFound")
    }

    /// HTTP 422 `Invalid` because a field that may not change would change (see
    /// [`is_immutable_cause`]).
    pub fn is_immutable_field(&self) -> bool {
        match self {
            ClusterError::Rejected { code, causes, .. } => {
                *code == 422 && causes.iter().any(is_immutable_cause)
            }
            _ => false,
        }
    }
}
