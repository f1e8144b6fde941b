//! `capstan source fetch`: one run of the source stage from the command line: build a [`SourceSpec`]
//! from the flags, run the stage, and format the result for humans or as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use capstan_source::{
    Artifact, Auth, CacheOptions, Reference, SourceCache, SourceError, SourceSpec, Verification,
};
use clap::{Args, Subcommand};

use crate::cmd_app::fail;
use crate::{ClusterFlags, Output};

#[derive(Subcommand)]
pub enum SourceCommand {
    /// Resolve REF, fetch into the source cache, verify, check out read-only; print revision and path
    Fetch(FetchFlags),
    /// GitRepositories the controller fetches, with their revision and readiness
    List {
        /// Namespace (default: all)
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// One GitRepository
    Get {
        name: String,
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Args)]
pub struct FetchFlags {
    /// https://, http://, ssh://, user@host:path, git:// or file:// URL
    url: String,
    /// BRANCH, tag:NAME, semver:RANGE, commit:SHA (or a bare 40-hex SHA), BRANCH@SHA
    #[arg(long = "ref", value_name = "REF", default_value = "main")]
    reference: String,
    /// SSH private key
    #[arg(long, value_name = "FILE")]
    ssh_key: Option<PathBuf>,
    /// File holding the passphrase of --ssh-key (never given on the command line itself)
    #[arg(long, value_name = "FILE", requires = "ssh_key")]
    ssh_key_passphrase_file: Option<PathBuf>,
    /// known_hosts for SSH (default ~/.ssh/known_hosts); unknown hosts are refused
    #[arg(long, value_name = "FILE")]
    known_hosts: Option<PathBuf>,
    /// HTTP basic-auth user; the password is read from $CAPSTAN_GIT_PASSWORD ($CAPSTAN_GIT_TOKEN: bearer)
    #[arg(long)]
    username: Option<String>,
    /// Require a signature: ssh=ALLOWED_SIGNERS_FILE or openpgp=PUBLIC_KEY_FILE (repeatable)
    #[arg(long = "verify", value_name = "KIND=FILE")]
    verify: Vec<String>,
    /// Cache directory (default $CAPSTAN_SOURCE_CACHE, else $XDG_CACHE_HOME/capstan/source)
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Fetch timeout in seconds
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub async fn run(cluster: &ClusterFlags, command: SourceCommand) -> ExitCode {
    let flags = match command {
        SourceCommand::Fetch(flags) => flags,
        SourceCommand::List { namespace, output } => {
            return crate::cmd_controller::sources(cluster, None, namespace.as_deref(), output)
                .await;
        }
        SourceCommand::Get {
            name,
            namespace,
            output,
        } => {
            return crate::cmd_controller::sources(cluster, Some(&name), Some(&namespace), output)
                .await;
        }
    };
    let result = async {
        let mut args = FetchArgs {
            url: flags.url,
            reference: flags.reference,
            ssh_key: flags.ssh_key,
            ssh_key_passphrase_file: flags.ssh_key_passphrase_file,
            known_hosts: flags.known_hosts,
            username: flags.username,
            password: std::env::var("CAPSTAN_GIT_PASSWORD").ok(),
            bearer_token: std::env::var("CAPSTAN_GIT_TOKEN").ok(),
            cache_dir: flags.cache_dir.unwrap_or_else(default_cache_dir),
            timeout_seconds: flags.timeout,
            ..Default::default()
        };
        for flag in &flags.verify {
            apply_verify_flag(&mut args, flag)?;
        }
        let artifact = fetch_command(args).await?;
        match flags.output {
            Output::Text => print!("{}", format_text(&artifact)),
            Output::Json => println!("{}", format_json(&artifact)),
        }
        anyhow::Ok(())
    };
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// Command-line values of `capstan source fetch`.
#[derive(Clone, Debug, Default)]
struct FetchArgs {
    url: String,
    reference: String,
    ssh_key: Option<PathBuf>,
    /// File holding the SSH key's passphrase (a trailing line break is ignored).
    ssh_key_passphrase_file: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    /// Username for HTTP basic auth; the password comes from the environment, never from argv.
    username: Option<String>,
    password: Option<String>,
    bearer_token: Option<String>,
    verify_ssh_allowed_signers: Option<PathBuf>,
    verify_openpgp_keys: Vec<PathBuf>,
    cache_dir: PathBuf,
    timeout_seconds: u64,
}

/// Runs the stage for the CLI and returns the artifact.
async fn fetch_command(args: FetchArgs) -> Result<Artifact, SourceError> {
    let passphrase = match (&args.ssh_key_passphrase_file, &args.ssh_key) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(SourceError::AuthFailed {
                url: capstan_core::git_url::redact_userinfo(&args.url),
                detail: "a passphrase file was given without an SSH key (--ssh-key)".into(),
            });
        }
        (Some(file), Some(_)) => Some(capstan_source::read_passphrase_file(file, &args.url)?),
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

/// The human form: revision and checkout path, one per line.
fn format_text(artifact: &Artifact) -> String {
    format!(
        "revision: {}\ncheckout: {}\ndigest:   {}\n",
        artifact.revision,
        artifact.checkout.display(),
        artifact.digest
    )
}

fn format_json(artifact: &Artifact) -> String {
    serde_json::to_string_pretty(artifact).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// `$CAPSTAN_SOURCE_CACHE`, else `$XDG_CACHE_HOME/capstan/source`, else `~/.cache/capstan/source`.
pub(crate) fn default_cache_dir() -> PathBuf {
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
fn apply_verify_flag(args: &mut FetchArgs, flag: &str) -> Result<(), SourceError> {
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
