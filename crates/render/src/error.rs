//! The one error type of the render stage. Every variant names the file (relative to the repository
//! root) and, where it applies, the document or line, so a user can fix the input without guessing.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{path}: path escapes the repository root ({reason})")]
    PathEscape { path: PathBuf, reason: String },
    /// The app directory (a local directory or a Git source's `path`) resolves outside the
    /// repository root, through a symlink or `..`.
    #[error(
        "app directory {path} resolves outside the repository root {root} (symlinks and .. are \
         resolved; nothing outside the repository is read)"
    )]
    AppOutsideRoot { path: PathBuf, root: PathBuf },
    #[error("{path}: absolute paths are refused; use a path relative to the repository")]
    AbsolutePath { path: PathBuf },
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: file is {size} bytes, over the limit of {limit}")]
    FileTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path}: invalid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{path}: invalid JSON: {message}")]
    Json { path: PathBuf, message: String },
    #[error("{path} document {document}: {message}")]
    InvalidObject {
        path: PathBuf,
        document: usize,
        message: String,
    },
    #[error("{path}: more than {limit} documents")]
    TooManyDocuments { path: PathBuf, limit: usize },
    #[error(
        "{first_path} document {first_document} and {path} document {document}: duplicate object {object}"
    )]
    DuplicateObject {
        object: String,
        first_path: PathBuf,
        first_document: usize,
        path: PathBuf,
        document: usize,
    },
    #[error(
        "{path}: remote base {reference:?} is refused: render reads only the repository and does no \
         network I/O, and a remote base is not pinned by the commit; vendor the base into the \
         repository and reference it by a relative path"
    )]
    RemoteBase { path: PathBuf, reference: String },
    #[error("{path}: no renderer applies: {reason}")]
    Detection { path: PathBuf, reason: String },
    #[error("{tool} not found ({tried}); put it on PATH or set {env_var}")]
    ToolMissing {
        tool: &'static str,
        tried: String,
        env_var: &'static str,
    },
    #[error("{tool} for {path}: timed out after {timeout:?}")]
    ToolTimeout {
        tool: String,
        path: PathBuf,
        timeout: Duration,
    },
    #[error("{tool} for {path}: output over the limit of {limit} bytes")]
    ToolOutputTooLarge {
        tool: String,
        path: PathBuf,
        limit: usize,
    },
    #[error("{tool} for {path} failed ({status}): {stderr}")]
    ToolFailed {
        tool: String,
        path: PathBuf,
        status: String,
        stderr: String,
    },
    #[error("{path}: invalid glob {glob:?}: {message}")]
    Glob {
        path: PathBuf,
        glob: String,
        message: String,
    },
    /// A Jsonnet evaluation error: jrsonnet's message and stack trace, with `file:line:column`
    /// locations relative to the repository root.
    #[error("{path}: jsonnet: {message}")]
    Jsonnet { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Options { path: PathBuf, message: String },
}
