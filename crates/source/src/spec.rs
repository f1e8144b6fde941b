//! Input types of the source stage: what to fetch, which commit, with which credentials, and which
//! signatures to demand.

use std::fmt;
use std::path::PathBuf;

use crate::error::SourceError;

/// Everything the stage needs to produce one [`crate::Artifact`]. `Debug` masks credentials.
#[derive(Clone)]
pub struct SourceSpec {
    /// `https://`, `http://`, `ssh://`, `user@host:path`, `git://` or `file://` URL. Credentials in the
    /// URL are accepted (they become [`Auth::Basic`]) but never stored or shown.
    pub url: String,
    pub reference: Reference,
    pub auth: Auth,
    pub verification: Option<Verification>,
}

impl fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceSpec")
            .field("url", &crate::url::redact_userinfo(&self.url))
            .field("reference", &self.reference)
            .field("auth", &self.auth)
            .field("verification", &self.verification)
            .finish()
    }
}

/// Which commit of the repository to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// The head of a branch.
    Branch(String),
    /// A tag (lightweight or annotated); annotated tags are peeled to their commit.
    Tag(String),
    /// The highest tag that parses as a semantic version (an optional leading `v` is ignored) and
    /// matches the range, e.g. `>=1.2, <2`.
    Semver(semver::VersionReq),
    /// An exact commit, also one that is no branch head (the mirror is deepened to find it).
    Commit(String),
    /// A commit that must be in the history of a branch ("branch + commit" pin).
    BranchCommit { branch: String, commit: String },
}

impl Reference {
    /// Parses the `--ref` syntax: `branch:NAME`, `tag:NAME`, `semver:RANGE`, `commit:SHA`,
    /// `NAME@SHA` (branch + commit), a bare 40-hex string (commit) or a bare name (branch).
    pub fn parse(text: &str) -> Result<Self, SourceError> {
        let invalid = |why: &str| SourceError::InvalidReference {
            reference: text.to_owned(),
            reason: why.to_owned(),
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        if let Some(name) = text.strip_prefix("branch:") {
            return Ok(Reference::Branch(
                non_empty(name).ok_or_else(|| invalid("no branch name"))?,
            ));
        }
        if let Some(name) = text.strip_prefix("tag:") {
            return Ok(Reference::Tag(
                non_empty(name).ok_or_else(|| invalid("no tag name"))?,
            ));
        }
        if let Some(range) = text.strip_prefix("semver:") {
            // Commas are optional in the common `>=1.2 <2` spelling; the semver crate wants them.
            let normalised = normalise_semver_range(range);
            let req = semver::VersionReq::parse(&normalised)
                .map_err(|e| invalid(&format!("not a semver range: {e}")))?;
            return Ok(Reference::Semver(req));
        }
        if let Some(sha) = text.strip_prefix("commit:") {
            return Ok(Reference::Commit(
                full_sha(sha).ok_or_else(|| invalid("not a 40-hex commit id"))?,
            ));
        }
        if let Some((branch, sha)) = text.rsplit_once('@')
            && let Some(sha) = full_sha(sha)
            && !branch.is_empty()
        {
            return Ok(Reference::BranchCommit {
                branch: branch.to_owned(),
                commit: sha,
            });
        }
        if let Some(sha) = full_sha(text) {
            return Ok(Reference::Commit(sha));
        }
        Ok(Reference::Branch(text.to_owned()))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Branch(name) => write!(f, "branch {name}"),
            Reference::Tag(name) => write!(f, "tag {name}"),
            Reference::Semver(req) => write!(f, "semver range {req}"),
            Reference::Commit(sha) => write!(f, "commit {sha}"),
            Reference::BranchCommit { branch, commit } => {
                write!(f, "commit {commit} on branch {branch}")
            }
        }
    }
}

fn non_empty(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn full_sha(text: &str) -> Option<String> {
    let text = text.trim();
    (text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| text.to_ascii_lowercase())
}

fn normalise_semver_range(range: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for token in range.split([',', ' ']).filter(|t| !t.is_empty()) {
        // A lone operator (`>= 1.2`) belongs to the next token.
        match parts.last_mut() {
            Some(last) if last.chars().all(|c| "<>=~^".contains(c)) => last.push_str(token),
            _ => parts.push(token.to_owned()),
        }
    }
    parts.join(", ")
}

/// Credentials. Their `Debug` output never shows secrets.
#[derive(Clone, Default)]
pub enum Auth {
    #[default]
    None,
    /// HTTP basic auth.
    Basic { username: String, password: String },
    /// HTTP `Authorization: Bearer` token.
    Bearer { token: String },
    /// SSH private key, optionally protected by a passphrase. The host key must be in `known_hosts`
    /// (an unknown host is refused); without `known_hosts`, `~/.ssh/known_hosts` applies.
    Ssh {
        private_key: PathBuf,
        known_hosts: Option<PathBuf>,
        passphrase: Option<Secret>,
    },
}

/// A secret string (password, passphrase). `Debug` and `Display` never show it; [`Secret::expose`]
/// is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Reads a secret from a file; one trailing line break is dropped (editors add one).
    pub fn from_file(path: &std::path::Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let text = text
            .strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text);
        Ok(Secret(text.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Reads an SSH key passphrase file; the error names the file, never its content.
pub fn read_passphrase_file(file: &std::path::Path, url: &str) -> Result<Secret, SourceError> {
    Secret::from_file(file).map_err(|e| SourceError::AuthFailed {
        url: crate::url::redact_userinfo(url),
        detail: format!(
            "cannot read the SSH key passphrase file {}: {e}",
            file.display()
        ),
    })
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Auth::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
            Auth::Ssh {
                private_key,
                known_hosts,
                passphrase,
            } => f
                .debug_struct("Ssh")
                .field("private_key", private_key)
                .field("known_hosts", known_hosts)
                .field("passphrase", passphrase)
                .finish(),
        }
    }
}

impl Auth {
    /// Strings that must never leave the process in logs or errors.
    pub(crate) fn secrets(&self) -> Vec<String> {
        match self {
            Auth::Basic { password, .. } if !password.is_empty() => vec![password.clone()],
            Auth::Bearer { token } if !token.is_empty() => vec![token.clone()],
            Auth::Ssh {
                passphrase: Some(passphrase),
                ..
            } if !passphrase.expose().is_empty() => vec![passphrase.expose().to_owned()],
            _ => Vec::new(),
        }
    }
}

/// Signature policy: the resolved commit (or, for tag references, the tag) must be signed by one of
/// these keys.
#[derive(Clone, Debug, Default)]
pub struct Verification {
    /// An `allowed_signers` file (see ssh-keygen(1)) listing trusted SSH signing keys.
    pub ssh_allowed_signers: Option<PathBuf>,
    /// ASCII-armoured or binary OpenPGP public keys that are trusted.
    pub openpgp_public_keys: Vec<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_reference_form() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            Reference::parse("main").expect("bare name"),
            Reference::Branch("main".into())
        );
        assert_eq!(
            Reference::parse("tag:v1").expect("tag"),
            Reference::Tag("v1".into())
        );
        assert_eq!(
            Reference::parse(sha).expect("sha"),
            Reference::Commit(sha.into())
        );
        assert_eq!(
            Reference::parse(&format!("main@{sha}")).expect("pin"),
            Reference::BranchCommit {
                branch: "main".into(),
                commit: sha.into()
            }
        );
        let Reference::Semver(req) = Reference::parse("semver:>=1.2 <2").expect("range") else {
            panic!("expected a semver range");
        };
        assert!(req.matches(&semver::Version::new(1, 9, 0)));
        assert!(!req.matches(&semver::Version::new(2, 0, 0)));
        assert!(!req.matches(&semver::Version::new(1, 1, 0)));
    }

    #[test]
    fn rejects_bad_references_naming_them() {
        let err = Reference::parse("semver:not-a-range").expect_err("invalid range");
        assert!(err.to_string().contains("semver:not-a-range"), "{err}");
        assert!(Reference::parse("commit:abc").is_err());
        assert!(Reference::parse("  ").is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let auth = Auth::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
        let auth = Auth::Bearer {
            token: "tok123".into(),
        };
        assert!(!format!("{auth:?}").contains("tok123"));
        let auth = Auth::Ssh {
            private_key: "/keys/id".into(),
            known_hosts: None,
            passphrase: Some(Secret::new("open-sesame")),
        };
        assert!(!format!("{auth:?}").contains("open-sesame"));
        assert_eq!(Secret::new("x").to_string(), "<redacted>");
    }
}
