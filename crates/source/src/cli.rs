//! The logic behind `capstan source fetch`: build a [`SourceSpec`] from command-line values, run the
//! stage, and format the result for humans or as JSON.

use std::path::PathBuf;

use crate::cache::{Artifact, CacheOptions, SourceCache};
use crate::error::SourceError;
use crate::spec::{Auth, Reference, Secret, SourceSpec, Verification};

/// Command-line values of `capstan source fetch`.
#[derive(Clone, Debug, Default)]
pub struct FetchArgs {
    pub url: String,
    pub reference: String,
    pub ssh_key: Option<PathBuf>,
    /// File holding the SSH key's passphrase (a trailing line break is ignored).
    pub ssh_key_passphrase_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    /// Username for HTTP basic auth; the password comes from the environment, never from argv.
    pub username: Option<String>,
    pub password: Option<String>,
    pub bearer_token: Option<String>,
    pub verify_ssh_allowed_signers: Option<PathBuf>,
    pub verify_openpgp_keys: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    pub timeout_seconds: u64,
}

/// Runs the stage for the CLI and returns the artifact.
pub async fn fetch_command(args: FetchArgs) -> Result<Artifact, SourceError> {
    let passphrase = match (&args.ssh_key_passphrase_file, &args.ssh_key) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(SourceError::AuthFailed {
                url: crate::url::redact_userinfo(&args.url),
                detail: "a passphrase file was given without an SSH key (--ssh-key)".into(),
            });
        }
        (Some(file), Some(_)) => Some(read_passphrase_file(file, &args.url)?),
    };
    let auth = match (&args.ssh_key, &args.username, &args.bearer_token) {
        (Some(key), _, _) => Auth::Ssh {
            private_key: key.clone(),
            known_hosts: args.known_hosts.clone(),
            passphrase,
        },
        (_, Some(username), _) => Auth::Basic {
            username: username.clone(),
            password: args.password.clone().unwrap_or_default(),
        },
        (_, _, Some(token)) => Auth::Bearer {
            token: token.clone(),
        },
        _ => Auth::None,
    };
    let verification = (args.verify_ssh_allowed_signers.is_some()
        || !args.verify_openpgp_keys.is_empty())
    .then(|| Verification {
        ssh_allowed_signers: args.verify_ssh_allowed_signers.clone(),
        openpgp_public_keys: args.verify_openpgp_keys.clone(),
    });
    let spec = SourceSpec {
        url: args.url.clone(),
        reference: Reference::parse(&args.reference)?,
        auth,
        verification,
    };
    let mut options = CacheOptions::new(&args.cache_dir);
    options.fetch_timeout = std::time::Duration::from_secs(args.timeout_seconds.max(1));
    SourceCache::new(options).fetch(&spec).await
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

/// The human form: revision and checkout path, one per line.
pub fn format_text(artifact: &Artifact) -> String {
    format!(
        "revision: {}\ncheckout: {}\ndigest:   {}\n",
        artifact.revision,
        artifact.checkout.display(),
        artifact.digest
    )
}

pub fn format_json(artifact: &Artifact) -> String {
    serde_json::to_string_pretty(artifact).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// `$CAPSTAN_SOURCE_CACHE`, else `$XDG_CACHE_HOME/capstan/source`, else `~/.cache/capstan/source`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAPSTAN_SOURCE_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("capstan").join("source")
}

/// Applies one `--verify KIND=FILE` flag: `ssh=ALLOWED_SIGNERS` or `openpgp=PUBLIC_KEY` (repeatable).
pub fn apply_verify_flag(args: &mut FetchArgs, flag: &str) -> Result<(), SourceError> {
    let invalid = || SourceError::InvalidReference {
        reference: format!("--verify {flag}"),
        reason: "expected ssh=ALLOWED_SIGNERS_FILE or openpgp=PUBLIC_KEY_FILE".into(),
    };
    let (kind, file) = flag.split_once('=').ok_or_else(invalid)?;
    if file.is_empty() {
        return Err(invalid());
    }
    match kind {
        "ssh" => args.verify_ssh_allowed_signers = Some(PathBuf::from(file)),
        "openpgp" | "pgp" | "gpg" => args.verify_openpgp_keys.push(PathBuf::from(file)),
        _ => return Err(invalid()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_flags_select_the_key_kind() {
        let mut args = FetchArgs::default();
        apply_verify_flag(&mut args, "ssh=/keys/allowed").expect("ssh");
        apply_verify_flag(&mut args, "openpgp=/keys/a.asc").expect("openpgp");
        assert_eq!(
            args.verify_ssh_allowed_signers,
            Some(PathBuf::from("/keys/allowed"))
        );
        assert_eq!(args.verify_openpgp_keys, vec![PathBuf::from("/keys/a.asc")]);
        assert!(apply_verify_flag(&mut args, "x509=/k").is_err());
        assert!(apply_verify_flag(&mut args, "ssh=").is_err());
    }
}
