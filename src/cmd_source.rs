//! `capstan source fetch`: one run of the source stage from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use capstan_source::cli::{self, FetchArgs};
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
            cache_dir: flags.cache_dir.unwrap_or_else(cli::default_cache_dir),
            timeout_seconds: flags.timeout,
            ..Default::default()
        };
        for flag in &flags.verify {
            cli::apply_verify_flag(&mut args, flag)?;
        }
        let artifact = cli::fetch_command(args).await?;
        match flags.output {
            Output::Text => print!("{}", cli::format_text(&artifact)),
            Output::Json => println!("{}", cli::format_json(&artifact)),
        }
        anyhow::Ok(())
    };
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}
