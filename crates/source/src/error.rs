//! [`SourceError`]: the one error type of the source stage. Every variant names the URL (always with
//! credentials removed) and what the user can act on.

/// Errors of the source stage. `Clone` because one fetch serves every request that coalesced onto it.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("invalid source URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error(
        "authentication failed for {url}: check the username/password, token or SSH key ({detail})"
    )]
    AuthFailed { url: String, detail: String },
    #[error("cannot unlock SSH key {key} for {url}: {reason}")]
    SshKeyPassphrase {
        url: String,
        key: String,
        reason: String,
    },
    #[error("repository {url} not found (or the credentials may not see it)")]
    RepositoryNotFound { url: String },
    #[error(
        "host key of {host} is unknown for {url}: add it to the known_hosts file; unknown hosts are never trusted"
    )]
    HostKeyUnknown { url: String, host: String },
    #[error(
        "host key of {host} CHANGED for {url}: possible man-in-the-middle; update known_hosts only if the change is expected"
    )]
    HostKeyChanged { url: String, host: String },
    #[error("cannot reach {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("fetching {url} timed out after {seconds}s")]
    Timeout { url: String, seconds: u64 },
    #[error("fetching {url} was cancelled")]
    Cancelled { url: String },
    #[error("{reference} not found in {url}")]
    RefNotFound { url: String, reference: String },
    /// Raised as soon as the transfer passes the limit, so `actual_bytes` is what was seen when the
    /// transfer stopped (at least that much).
    #[error(
        "repository {url} is larger than the limit of {limit_bytes} bytes (at least {actual_bytes} bytes)"
    )]
    TooLarge {
        url: String,
        limit_bytes: u64,
        actual_bytes: u64,
    },
    #[error("commit {commit} of {url} is not signed; verification requires a signature")]
    SignatureMissing { url: String, commit: String },
    #[error("signature on {object} of {url} is invalid (key {key_id}): {detail}")]
    SignatureInvalid {
        url: String,
        object: String,
        key_id: String,
        detail: String,
    },
    #[error("signature on {object} of {url} is made by key {key_id}, which is not trusted")]
    SignatureUntrusted {
        url: String,
        object: String,
        key_id: String,
    },
    #[error("git transport error for {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("source cache error at {path}: {detail}")]
    Cache { path: String, detail: String },
}

impl SourceError {
    pub(crate) fn cache(path: &std::path::Path, detail: impl std::fmt::Display) -> Self {
        SourceError::Cache {
            path: path.display().to_string(),
            detail: detail.to_string(),
        }
    }
}

impl From<capstan_core::git_url::InvalidUrl> for SourceError {
    fn from(e: capstan_core::git_url::InvalidUrl) -> Self {
        SourceError::InvalidUrl {
            url: e.url,
            reason: e.reason,
        }
    }
}
