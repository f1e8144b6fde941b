use std::path::PathBuf;

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

    #[error("invalid object: {source}")]
    Object {
        #[source]
        source: capstan_core::ObjectError,
    },

    /// The API server refused the request; `message` is its own explanation (field paths included).
    #[error("{verb} {object}: {message} ({reason}, HTTP {code})")]
    Rejected {
        verb: String,
        object: String,
        code: u16,
        reason: String,
        message: String,
    },
}
