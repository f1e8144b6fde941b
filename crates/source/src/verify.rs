//! Signature verification of the resolved commit (or annotated tag). gix does not verify signatures,
//! so this module runs `git verify-commit` / `git verify-tag --raw` against the mirror, which in turn
//! runs `ssh-keygen -Y verify` (SSH signatures, checked against an allowed_signers file) or `gpg`
//! (OpenPGP, against a throw-away keyring holding only the trusted keys). Only keys the
//! [`Verification`] lists are trusted; the user's own keyring and git config are never consulted.

use std::path::Path;
use std::process::Command;

use crate::error::SourceError;
use crate::spec::Verification;

/// What is being verified: a commit, or an annotated tag object.
pub(crate) enum Signed {
    Commit(gix::ObjectId),
    Tag(gix::ObjectId),
}

pub(crate) fn verify(
    repo: &gix::Repository,
    mirror: &Path,
    policy: &Verification,
    object: Signed,
    url: &str,
) -> Result<(), SourceError> {
    let (subcommand, id, label) = match object {
        Signed::Commit(id) => ("verify-commit", id, format!("commit {id}")),
        Signed::Tag(id) => ("verify-tag", id, format!("tag object {id}")),
    };
    if !carries_signature(repo, id) {
        return Err(SourceError::SignatureMissing {
            url: url.to_owned(),
            commit: label,
        });
    }
    let gnupg_home = tempfile::Builder::new()
        .prefix("capstan-gnupg-")
        .tempdir()
        .map_err(|e| {
            SourceError::cache(mirror, format!("cannot create a keyring directory: {e}"))
        })?;
    for key in &policy.openpgp_public_keys {
        let output = Command::new("gpg")
            .env("GNUPGHOME", gnupg_home.path())
            .args(["--batch", "--quiet", "--import"])
            .arg(key)
            .output()
            .map_err(|e| SourceError::cache(key, format!("cannot run gpg: {e}")))?;
        if !output.status.success() {
            return Err(SourceError::cache(
                key,
                format!(
                    "not an OpenPGP public key: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            ));
        }
    }
    let allowed_signers = policy
        .ssh_allowed_signers
        .as_deref()
        .map_or_else(|| "/dev/null".to_owned(), |p| p.display().to_string());
    let output = Command::new("git")
        .env("GIT_DIR", mirror)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GNUPGHOME", gnupg_home.path())
        .arg("-c")
        .arg(format!("gpg.ssh.allowedSignersFile={allowed_signers}"))
        .args([subcommand, "--raw"])
        .arg(id.to_string())
        .output()
        .map_err(|e| SourceError::cache(mirror, format!("cannot run git {subcommand}: {e}")))?;
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let key_id = key_id(&report);
    if output.status.success() {
        tracing::info!(object = %label, key = %key_id, "signature verified");
        return Ok(());
    }
    let detail = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if report.contains("BADSIG")
        || report.contains("Signature verification failed")
        || report.contains("incorrect signature")
    {
        return Err(SourceError::SignatureInvalid {
            url: url.to_owned(),
            object: label,
            key_id,
            detail,
        });
    }
    // Good signature by a key nobody trusted, or a key we have not got.
    Err(SourceError::SignatureUntrusted {
        url: url.to_owned(),
        object: label,
        key_id,
    })
}

fn carries_signature(repo: &gix::Repository, id: gix::ObjectId) -> bool {
    let Ok(object) = repo.find_object(id) else {
        return false;
    };
    let text = String::from_utf8_lossy(&object.data);
    // Commits carry `gpgsig` headers; tags append the armoured signature to the message.
    text.contains("\ngpgsig ")
        || text.contains("-----BEGIN PGP SIGNATURE-----")
        || text.contains("-----BEGIN SSH SIGNATURE-----")
}

/// The key the signature names: `SHA256:…` fingerprint for SSH, the long key id for OpenPGP.
fn key_id(report: &str) -> String {
    if let Some(start) = report.find("SHA256:") {
        return report[start..]
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
    }
    for marker in ["ERRSIG ", "BADSIG ", "GOODSIG ", "VALIDSIG "] {
        if let Some(start) = report.find(marker) {
            return report[start + marker.len()..]
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
        }
    }
    "unknown".to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_ids_come_from_ssh_and_gpg_reports() {
        assert_eq!(
            super::key_id(
                "Good \"git\" signature with ED25519 key SHA256:abcDEF123 No principal matched."
            ),
            "SHA256:abcDEF123"
        );
        assert_eq!(
            super::key_id("[GNUPG:] ERRSIG 0123456789ABCDEF 1 10 00 1 9"),
            "0123456789ABCDEF"
        );
        assert_eq!(super::key_id("nothing"), "unknown");
    }
}
