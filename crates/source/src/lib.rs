//! The source stage: turn a [`SourceSpec`] (git URL, reference, credentials, signature policy) into an
//! [`Artifact`]: the resolved commit, its metadata, a read-only checkout and a content digest.
//!
//! Module map:
//! - [`spec`]: the input types, the parsing of `--ref` strings and reading passphrase files.
//! - [`error`]: [`SourceError`], the one error type of the stage.
//! - [`url`]: mirror directory names; URL parsing (credentials stripped, cache keys, display form)
//!   is `capstan_core::git_url`, re-exported here.
//! - [`remote`]: the gix transport work (ref listing, shallow fetch, deepening), blocking code.
//! - `failure`: sorting transport failures into [`SourceError`] variants by the types gix returns.
//! - [`resolve`]: picking the commit a reference names from a remote ref listing.
//! - [`checkout`]: read-only per-commit checkouts and their content digest.
//! - [`verify`]: commit/tag signature checks (via `git verify-commit`/`verify-tag`, which run
//!   `ssh-keygen -Y verify` or `gpg`).
//! - [`cache`]: [`SourceCache`], the mirror cache: per-URL coalescing, "new commit?" check, LRU GC.

pub mod cache;
pub mod checkout;
pub mod error;
mod failure;
pub mod remote;
pub mod resolve;
pub mod spec;
pub mod url;
pub mod verify;

pub use cache::{Artifact, CacheOptions, CacheStats, CommitMetadata, Signature, SourceCache};
pub use error::SourceError;
pub use spec::{Auth, Reference, Secret, SourceSpec, Verification, read_passphrase_file};
