//! Signature verification of the resolved commit (or annotated tag). gix does not verify signatures,
//! so this module runs `git verify-commit` / `git verify-tag --raw` against the mirror, which in turn
//! runs `ssh-keygen -Y verify` (SSH signatures, checked against an allowed_signers file) or `gpg`
//! (OpenPGP, against a throw-away keyring holding only the trusted keys). Only keys the
//! [`Verification`] lists are trusted; the user's own keyring and git config are never consulted.

use std::path::Path;
use std::process::Command;

use sha2::Digest;

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
    let Some(data) = repo
        .find_object(id)
        .ok()
        .map(|object| object.data.clone())
        .filter(|data| carries_signature(data))
    else {
        return Err(SourceError::SignatureMissing {
            url: url.to_owned(),
            commit: label,
        });
    };
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
    let key_id = key_id(&report)
        .or_else(|| ssh_signature_key(&data))
        .unwrap_or_else(|| "unknown".to_owned());
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
    // A signature that does not match the object (BADSIG, "incorrect signature") or cannot even be
    // read (corrupted armour or packets) is invalid; gpg can only tell a bad signature from an
    // untrusted one when it holds the key, so a tampered object signed by a stranger is "untrusted".
    if [
        "BADSIG",
        "Signature verification failed",
        "incorrect signature",
        "[GNUPG:] NODATA",
        "BADARMOR",
        "Couldn't parse signature",
        "invalid format",
    ]
    .iter()
    .any(|marker| report.contains(marker))
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

fn carries_signature(data: &[u8]) -> bool {
    let text = String::from_utf8_lossy(data);
    // Commits carry `gpgsig` headers; tags append the armoured signature to the message.
    text.contains("\ngpgsig ")
        || text.contains("-----BEGIN PGP SIGNATURE-----")
        || text.contains("-----BEGIN SSH SIGNATURE-----")
}

/// The key the verifier's report names: `SHA256:…` fingerprint for SSH, the long key id for OpenPGP.
fn key_id(report: &str) -> Option<String> {
    if let Some(start) = report.find("SHA256:") {
        return report[start..].split_whitespace().next().map(str::to_owned);
    }
    ["ERRSIG ", "BADSIG ", "GOODSIG ", "VALIDSIG "]
        .iter()
        .find_map(|marker| {
            let start = report.find(marker)?;
            report[start + marker.len()..]
                .split_whitespace()
                .next()
                .map(str::to_owned)
        })
}

/// The `SHA256:…` fingerprint of the public key inside an SSH signature (the SSHSIG blob carries
/// it), for reports that name no key: `ssh-keygen` says only "incorrect signature" when a signature
/// does not match.
fn ssh_signature_key(object: &[u8]) -> Option<String> {
    use base64::Engine;
    const BEGIN: &str = "-----BEGIN SSH SIGNATURE-----";
    const END: &str = "-----END SSH SIGNATURE-----";
    let text = String::from_utf8_lossy(object);
    let start = text.find(BEGIN)? + BEGIN.len();
    let end = start + text[start..].find(END)?;
    let armoured: String = text[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(armoured)
        .ok()?;
    // "SSHSIG", uint32 version, string public key (uint32 length + bytes).
    let rest = blob.strip_prefix(b"SSHSIG")?;
    let length = u32::from_be_bytes(rest.get(4..8)?.try_into().ok()?) as usize;
    let public_key = rest.get(8..8 + length)?;
    let digest = sha2::Sha256::digest(public_key);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_ids_come_from_ssh_and_gpg_reports() {
        assert_eq!(
            super::key_id(
                "Good \"git\" signature with ED25519 key SHA256:abcDEF123 No principal matched."
            )
            .as_deref(),
            Some("SHA256:abcDEF123")
        );
        assert_eq!(
            super::key_id("[GNUPG:] ERRSIG 0123456789ABCDEF 1 10 00 1 9").as_deref(),
            Some("0123456789ABCDEF")
        );
        assert_eq!(super::key_id("nothing"), None);
    }
}
