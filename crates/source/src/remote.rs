//! Transport work done with gix, in blocking code that callers run under `spawn_blocking`: one
//! connection per sync that lists the remote refs (one round trip) and only fetches when they differ
//! from the mirror's, shallow depth 1; deepening for pinned commits. Also maps gix/ssh/http failures
//! onto the distinct [`SourceError`] variants.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gix::remote::Direction;
use gix::remote::fetch::Shallow;

use crate::error::SourceError;
use crate::failure::{Findings, SshProblem, Stage, Verdict, ssh_diagnosis, verdict};
use crate::spec::{Auth, Secret};
use crate::url::RemoteUrl;

/// The mirror keeps every branch and tag of the remote under the same name; `+` because force
/// pushes must be followed, not refused.
const MIRROR_REFSPECS: [&str; 2] = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

const MIN_SCRUBBED_SECRET_LEN: usize = 4;

/// One branch or tag as listed by the remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteRef {
    /// Full name, e.g. `refs/heads/main`.
    pub name: String,
    /// What the ref points to (the tag object for annotated tags).
    pub target: gix::ObjectId,
    /// The commit behind it (annotated tags peeled).
    pub commit: gix::ObjectId,
}

/// The result of one sync of a mirror.
#[derive(Clone, Debug)]
pub struct SyncOutcome {
    pub refs: Vec<RemoteRef>,
    /// False when the ref listing matched the mirror and no pack was requested.
    pub fetched: bool,
}

/// Everything a transport call needs besides the mirror path.
pub(crate) struct Transport<'a> {
    pub url: &'a RemoteUrl,
    pub auth: &'a Auth,
    pub connect_timeout: Duration,
    /// Set on cancellation, timeout or an exceeded size limit; gix checks it between reads.
    pub interrupt: Arc<AtomicBool>,
    pub max_repo_bytes: Option<u64>,
    /// ssh writes its diagnostics here (`ssh -E`): gix passes on only "permission denied" from ssh's
    /// stderr, and host key failures must be told apart.
    pub ssh_log: Option<tempfile::TempPath>,
    /// Hands an SSH key's passphrase to `ssh` (see [`Askpass`]); only for keys with a passphrase.
    pub askpass: Option<Askpass>,
}

/// An `SSH_ASKPASS` helper for a passphrase-protected key: a private (0700) temporary directory with
/// the passphrase in a 0600 file and a script that prints it. ssh runs the script instead of asking a
/// terminal (`SSH_ASKPASS_REQUIRE=force`), so no tty is needed and the passphrase is never in argv,
/// in the environment or in the mirror's config. Removed on drop.
pub(crate) struct Askpass {
    dir: tempfile::TempDir,
}

impl Askpass {
    pub(crate) fn new(passphrase: &Secret) -> Result<Self, SourceError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::Builder::new()
            .prefix("capstan-askpass-")
            .tempdir()
            .map_err(|e| SourceError::cache(&std::env::temp_dir(), e))?;
        let write = |name: &str, mode: u32, content: &[u8]| -> Result<PathBuf, SourceError> {
            let path = dir.path().join(name);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
                .and_then(|mut file| file.write_all(content).map(|()| file))
                .map_err(|e| SourceError::cache(&path, e))?;
            file.flush().map_err(|e| SourceError::cache(&path, e))?;
            Ok(path)
        };
        let secret = write("passphrase", 0o600, passphrase.expose().as_bytes())?;
        let script = format!(
            "#!/bin/sh\nexec cat {}\n",
            shell_quote(&secret.display().to_string())
        );
        write("askpass", 0o700, script.as_bytes())?;
        Ok(Askpass { dir })
    }

    fn script(&self) -> PathBuf {
        self.dir.path().join("askpass")
    }

    /// Environment that makes ssh and ssh-keygen take the passphrase from the script.
    fn env(&self) -> [(&'static str, String); 2] {
        [
            ("SSH_ASKPASS", self.script().display().to_string()),
            ("SSH_ASKPASS_REQUIRE", "force".to_owned()),
        ]
    }
}

/// Progress sink that counts the pack bytes gix receives and raises the interrupt flag once the
/// size budget is spent, so an oversized repository is refused during the transfer, not after it.
#[derive(Clone)]
struct SizeWatch {
    shared: Arc<SizeWatchShared>,
    /// Only the "read pack" child counts (pack bytes as they arrive from the remote).
    counts: bool,
}

struct SizeWatchShared {
    budget: u64,
    received: AtomicU64,
    exceeded: AtomicBool,
    interrupt: Arc<AtomicBool>,
}

/// gix-pack's progress id for "bytes of the pack read from the remote" (`ProgressId::ReadPackBytes`).
const READ_PACK_BYTES: gix::progress::Id = *b"BWRB";

impl SizeWatch {
    fn new(budget: u64, interrupt: Arc<AtomicBool>) -> Self {
        SizeWatch {
            shared: Arc::new(SizeWatchShared {
                budget,
                received: AtomicU64::new(0),
                exceeded: AtomicBool::new(false),
                interrupt,
            }),
            counts: false,
        }
    }

    fn record(&self, received: u64) {
        if received > self.shared.budget && !self.shared.exceeded.swap(true, Ordering::SeqCst) {
            self.shared.interrupt.store(true, Ordering::SeqCst);
        }
    }

    fn exceeded(&self) -> Option<u64> {
        self.shared
            .exceeded
            .load(Ordering::SeqCst)
            .then(|| self.shared.received.load(Ordering::SeqCst))
    }
}

impl gix::Count for SizeWatch {
    fn set(&self, step: gix::progress::Step) {
        if self.counts {
            self.shared.received.store(step as u64, Ordering::SeqCst);
            self.record(step as u64);
        }
    }

    fn step(&self) -> gix::progress::Step {
        if self.counts {
            self.shared.received.load(Ordering::SeqCst) as gix::progress::Step
        } else {
            0
        }
    }

    fn inc_by(&self, step: gix::progress::Step) {
        if self.counts {
            let now = self
                .shared
                .received
                .fetch_add(step as u64, Ordering::SeqCst)
                + step as u64;
            self.record(now);
        }
    }

    fn counter(&self) -> gix::progress::StepShared {
        // Only used by parallel index writing, which this watch does not count.
        Arc::default()
    }
}

impl gix::Progress for SizeWatch {
    fn init(&mut self, _max: Option<gix::progress::Step>, _unit: Option<gix::progress::Unit>) {}

    fn set_name(&mut self, _name: String) {}

    fn name(&self) -> Option<String> {
        None
    }

    fn id(&self) -> gix::progress::Id {
        gix::progress::UNKNOWN
    }

    fn message(&self, _level: gix::progress::MessageLevel, _message: String) {}
}

impl gix::NestedProgress for SizeWatch {
    type SubProgress = SizeWatch;

    fn add_child(&mut self, _name: impl Into<String>) -> Self::SubProgress {
        SizeWatch {
            shared: self.shared.clone(),
            counts: false,
        }
    }

    fn add_child_with_id(
        &mut self,
        _name: impl Into<String>,
        id: gix::progress::Id,
    ) -> Self::SubProgress {
        SizeWatch {
            shared: self.shared.clone(),
            counts: id == READ_PACK_BYTES,
        }
    }
}

impl Transport<'_> {
    fn display_url(&self) -> String {
        self.url.fetch_url.clone()
    }

    /// Opens the mirror (creating a bare repository on first use) with per-call settings applied
    /// in memory only, so no credential is ever written to the mirror's config.
    fn open_mirror(&self, mirror: &Path) -> Result<gix::Repository, SourceError> {
        let mut repo = if mirror.join("HEAD").exists() {
            gix::open_opts(mirror, gix::open::Options::isolated())
                .map_err(|e| SourceError::cache(mirror, e))?
        } else {
            gix::init_bare(mirror).map_err(|e| SourceError::cache(mirror, e))?;
            gix::open_opts(mirror, gix::open::Options::isolated())
                .map_err(|e| SourceError::cache(mirror, e))?
        };
        let mut config = repo.config_snapshot_mut();
        let set = |config: &mut gix::config::SnapshotMut<'_>, key: &str, value: &str| {
            config
                .set_raw_value(key, value)
                .map(|_| ())
                .map_err(|e| SourceError::cache(mirror, format!("cannot set {key}: {e}")))
        };
        if self.url.is_ssh {
            set(&mut config, "core.sshCommand", &self.ssh_command())?;
            // Without this gix guesses the program kind from the command string, and a command with
            // arguments is taken for a "simple" ssh that cannot take a port.
            set(&mut config, "ssh.variant", "ssh")?;
        }
        if let Auth::Bearer { token } = self.auth {
            set(
                &mut config,
                "http.extraHeader",
                &format!("Authorization: Bearer {token}"),
            )?;
        }
        set(
            &mut config,
            "http.connectTimeout",
            &self.connect_timeout.as_millis().to_string(),
        )?;
        config.commit().map_err(|e| SourceError::cache(mirror, e))?;
        Ok(repo)
    }

    /// gix spawns `ssh` for ssh URLs (through `sh -c`, as the command has arguments); these options make
    /// it fail instead of prompting and refuse hosts that are not in known_hosts. A key passphrase is
    /// the one question ssh may ask, and only the askpass script answers it: BatchMode would forbid
    /// even that, so it is off then, with every other prompt (passwords, keyboard-interactive)
    /// disabled and one passphrase attempt.
    fn ssh_command(&self) -> String {
        let mut cmd = String::new();
        match &self.askpass {
            Some(askpass) => {
                for (name, value) in askpass.env() {
                    cmd.push_str(&format!("{name}={} ", shell_quote(&value)));
                }
                cmd.push_str("ssh -o BatchMode=no -o NumberOfPasswordPrompts=1");
            }
            None => cmd.push_str("ssh -o BatchMode=yes"),
        }
        // Keepalives end a session whose server went silent (3 × 10 s), so a hung ssh cannot hold
        // the mirror lock forever.
        cmd.push_str(&format!(
            " -o StrictHostKeyChecking=yes -o ConnectTimeout={} -o ServerAliveInterval=10 \
             -o ServerAliveCountMax=3",
            self.connect_timeout.as_secs().max(1)
        ));
        if let Some(log) = &self.ssh_log {
            cmd.push_str(&format!(" -E {}", shell_quote(&log.display().to_string())));
        }
        if let Auth::Ssh {
            private_key,
            known_hosts,
            ..
        } = self.auth
        {
            cmd.push_str(&format!(
                " -o PreferredAuthentications=publickey -o PasswordAuthentication=no \
                 -o KbdInteractiveAuthentication=no -o IdentitiesOnly=yes -o IdentityAgent=none -i {}",
                shell_quote(&private_key.display().to_string())
            ));
            if let Some(known_hosts) = known_hosts {
                cmd.push_str(&format!(
                    " -o GlobalKnownHostsFile=/dev/null -o UserKnownHostsFile={}",
                    shell_quote(&known_hosts.display().to_string())
                ));
            }
        }
        cmd
    }

    /// The remote of a mirror: every branch and tag, no automatic tag following.
    fn mirror_remote<'repo>(
        &self,
        repo: &'repo gix::Repository,
    ) -> Result<gix::Remote<'repo>, SourceError> {
        repo.remote_at(self.url.fetch_url.as_str())
            .map_err(|e| self.classify(e))?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(MIRROR_REFSPECS, Direction::Fetch)
            .map_err(|e| self.classify(e))
    }

    /// Connects for fetching. `git://` connections are opened here rather than by gix: gix writes
    /// each pkt-line in several small writes to the bare socket, and with Nagle's algorithm on, every
    /// request then waits for the server's delayed ACK (~40 ms per round trip on Linux). The socket
    /// gets `TCP_NODELAY` (as git's own transport and reqwest's HTTP connections have). Other
    /// schemes go through gix as usual.
    fn connect<'remote, 'repo>(
        &self,
        remote: &'remote gix::Remote<'repo>,
    ) -> Result<
        gix::remote::Connection<
            'remote,
            'static,
            'repo,
            Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>,
        >,
        SourceError,
    > {
        let (url, version) = remote
            .sanitized_url_and_version(Direction::Fetch)
            .map_err(|e| self.classify(e))?;
        if url.scheme != gix::url::Scheme::Git {
            return remote
                .connect(Direction::Fetch)
                .map_err(|e| self.classify(e));
        }
        let host = url.host().unwrap_or("localhost").to_owned();
        let port = url.port;
        // Failing to resolve the host or to connect to it is unreachability by where it happened,
        // whatever the io kind; later socket errors are classified as usual.
        let unreachable = |e: std::io::Error| {
            let url = self.display_url();
            if self.interrupt.load(Ordering::Relaxed) {
                return SourceError::Cancelled { url };
            }
            SourceError::Unreachable {
                url,
                detail: e.to_string(),
            }
        };
        let address =
            std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port.unwrap_or(9418)))
                .map_err(unreachable)?
                .next()
                .ok_or_else(|| SourceError::Unreachable {
                    url: self.display_url(),
                    detail: format!("could not resolve {host}"),
                })?;
        let read = std::net::TcpStream::connect_timeout(&address, self.connect_timeout)
            .map_err(unreachable)?;
        read.set_nodelay(true).map_err(|e| self.classify(e))?;
        // A server that stops answering must not hold the blocking thread (and the mirror lock)
        // beyond the fetch timeout.
        read.set_read_timeout(Some(self.connect_timeout))
            .and_then(|()| read.set_write_timeout(Some(self.connect_timeout)))
            .map_err(|e| self.classify(e))?;
        let write = read.try_clone().map_err(|e| self.classify(e))?;
        let transport = gix_transport::client::git::blocking_io::Connection::new(
            read,
            write,
            version,
            url.path.clone(),
            Some((host, port)),
            gix_transport::client::git::ConnectMode::Daemon,
            false,
        );
        Ok(remote.to_connection_with_transport(Box::new(transport)))
    }

    /// Lists the remote refs over one connection and fetches (depth 1) only if they differ from the
    /// mirror's; prunes branches and tags the remote no longer has.
    pub(crate) fn sync(&self, mirror: &Path) -> Result<SyncOutcome, SourceError> {
        self.refuse_clear_text_credentials()?;
        let repo = self.open_mirror(mirror)?;
        let remote = self.mirror_remote(&repo)?;
        let connection = self.connect(&remote)?;
        let prepare = self
            .authenticate(connection)
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| self.classify(e))?;
        let refs = remote_refs(&prepare.ref_map().remote_refs);
        let local = local_refs(&repo, mirror)?;
        let wanted: BTreeMap<String, gix::ObjectId> =
            refs.iter().map(|r| (r.name.clone(), r.target)).collect();
        if wanted == local {
            tracing::debug!(url = %self.display_url(), "no new commit; fetch skipped");
            return Ok(SyncOutcome {
                refs,
                fetched: false,
            });
        }
        if !refs.is_empty() {
            let watch = self.size_watch(mirror)?;
            let received = prepare
                .with_shallow(Shallow::DepthAtRemote(NonZeroU32::MIN))
                .receive(watch.clone(), &self.interrupt);
            self.received(mirror, received, &watch)?;
        } else {
            drop(prepare);
        }
        prune(&repo, mirror, &local, &wanted)?;
        self.check_size(mirror)?;
        tracing::info!(url = %self.display_url(), refs = refs.len(), "fetched");
        Ok(SyncOutcome {
            refs,
            fetched: true,
        })
    }

    /// Fetches more history of all branches and tags so that an older commit becomes available.
    pub(crate) fn deepen(&self, mirror: &Path, shallow: Shallow) -> Result<(), SourceError> {
        let repo = self.open_mirror(mirror)?;
        let remote = self.mirror_remote(&repo)?;
        let connection = self.connect(&remote)?;
        let watch = self.size_watch(mirror)?;
        let received = self
            .authenticate(connection)
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| self.classify(e))?
            .with_shallow(shallow)
            .receive(watch.clone(), &self.interrupt);
        self.received(mirror, received, &watch)?;
        self.check_size(mirror)
    }

    /// A progress sink that interrupts the transfer once the mirror would outgrow the size limit
    /// (what is already on disk plus the pack bytes received); refuses at once if it already has.
    fn size_watch(&self, mirror: &Path) -> Result<SizeWatch, SourceError> {
        let Some(limit) = self.max_repo_bytes else {
            return Ok(SizeWatch::new(u64::MAX, self.interrupt.clone()));
        };
        self.check_size(mirror)?;
        let on_disk = dir_size(&mirror.join("objects"));
        Ok(SizeWatch::new(
            limit.saturating_sub(on_disk),
            self.interrupt.clone(),
        ))
    }

    /// The result of a pack transfer: an interruption by the size watch becomes [`SourceError::TooLarge`]
    /// and drops the mirror (gix already removed the partial pack; a mirror that cannot hold the
    /// repository is useless and would only be fetched into again).
    fn received<T, E: std::error::Error + 'static>(
        &self,
        mirror: &Path,
        result: Result<T, E>,
        watch: &SizeWatch,
    ) -> Result<T, SourceError> {
        if let Some(received) = watch.exceeded() {
            let limit = self.max_repo_bytes.unwrap_or_default();
            let _ = std::fs::remove_dir_all(mirror);
            tracing::warn!(url = %self.display_url(), limit, "size limit exceeded; transfer stopped");
            return Err(SourceError::TooLarge {
                url: self.display_url(),
                limit_bytes: limit,
                actual_bytes: limit.saturating_sub(watch.shared.budget) + received,
            });
        }
        result.map_err(|e| self.classify_at(Stage::Transfer, &e))
    }

    /// Credentials over plain `http://` travel in clear text; they are sent only to loopback hosts
    /// (local mirrors, tests), never across a network.
    fn refuse_clear_text_credentials(&self) -> Result<(), SourceError> {
        let has_credentials = !matches!(self.auth, Auth::None | Auth::Ssh { .. })
            || self.url.embedded_basic.is_some();
        let host = self.url.host();
        let host_name = host
            .rsplit_once(':')
            .map_or(host.as_str(), |(name, _)| name);
        let loopback = matches!(host_name, "127.0.0.1" | "localhost" | "[::1]");
        if has_credentials && self.url.fetch_url.starts_with("http://") && !loopback {
            return Err(SourceError::InvalidUrl {
                url: self.display_url(),
                reason: "refusing to send credentials in clear text over http://; use https://"
                    .into(),
            });
        }
        Ok(())
    }

    /// Answers credential requests from our [`Auth`] only: git credential helpers and prompts of the
    /// host are never consulted, so a missing or wrong password fails instead of hanging.
    fn authenticate<'a, 'repo, T>(
        &self,
        connection: gix::remote::Connection<'a, '_, 'repo, T>,
    ) -> gix::remote::Connection<'a, 'static, 'repo, T>
    where
        T: gix::protocol::transport::client::blocking_io::Transport,
    {
        let basic = match self.auth {
            Auth::Basic { username, password } => Some((username.clone(), password.clone())),
            _ => self.url.embedded_basic.clone(),
        };
        connection.with_credentials(move |action| match (action, &basic) {
            (gix::credentials::helper::Action::Get(context), Some((username, password))) => {
                Ok(Some(gix::credentials::protocol::Outcome {
                    identity: gix::sec::identity::Account {
                        username: username.clone(),
                        password: password.clone(),
                        oauth_refresh_token: None,
                    },
                    next: context.into(),
                }))
            }
            _ => Ok(None),
        })
    }

    fn check_size(&self, mirror: &Path) -> Result<(), SourceError> {
        let Some(limit) = self.max_repo_bytes else {
            return Ok(());
        };
        let actual = dir_size(&mirror.join("objects"));
        if actual > limit {
            // The oversized mirror is useless and would be fetched into again; drop it.
            let _ = std::fs::remove_dir_all(mirror);
            return Err(SourceError::TooLarge {
                url: self.display_url(),
                limit_bytes: limit,
                actual_bytes: actual,
            });
        }
        Ok(())
    }

    /// Sorts a failure of the connection, handshake or ref listing into the actionable variants
    /// (see [`Self::classify_at`]).
    pub(crate) fn classify(&self, error: impl std::error::Error + 'static) -> SourceError {
        self.classify_at(Stage::Connect, &error)
    }

    /// Sorts a transport failure into the actionable variants: a raised interrupt flag is a
    /// cancellation; over ssh, what ssh itself reported ([`ssh_diagnosis`]) decides; otherwise the
    /// types in the error's cause tree do ([`Findings`]). Anything else stays a generic transport
    /// error. Secrets are scrubbed from the detail.
    fn classify_at(&self, stage: Stage, error: &(dyn std::error::Error + 'static)) -> SourceError {
        let url = self.display_url();
        if self.interrupt.load(Ordering::Relaxed) {
            return SourceError::Cancelled { url };
        }
        let ssh_said = self.ssh_said();
        let mut detail = error_chain(error);
        if let Some(ssh_said) = &ssh_said {
            detail = format!("{detail}; ssh: {}", ssh_said.replace('\n', " "));
        }
        let detail = self.scrub(detail);
        match ssh_said.as_deref().and_then(ssh_diagnosis) {
            Some(SshProblem::HostKeyChanged) => {
                return SourceError::HostKeyChanged {
                    url,
                    host: self.url.host(),
                };
            }
            Some(SshProblem::HostKeyUnknown) => {
                return SourceError::HostKeyUnknown {
                    url,
                    host: self.url.host(),
                };
            }
            Some(SshProblem::AuthRejected | SshProblem::KeyPassphrase) => {
                return self.auth_failed(detail);
            }
            Some(SshProblem::Unreachable) => return SourceError::Unreachable { url, detail },
            None => {}
        }
        match verdict(&Findings::of(error), stage, self.url.is_ssh) {
            Verdict::AuthFailed => self.auth_failed(detail),
            Verdict::RepositoryNotFound => SourceError::RepositoryNotFound { url },
            Verdict::Unreachable => SourceError::Unreachable { url, detail },
            Verdict::Other => SourceError::Transport { url, detail },
        }
    }

    /// What ssh wrote to its log (`ssh -E`), if anything.
    fn ssh_said(&self) -> Option<String> {
        let said = std::fs::read_to_string(self.ssh_log.as_ref()?).ok()?;
        let said = said.trim();
        (!said.is_empty()).then(|| said.to_owned())
    }

    /// Secrets are never handed to gix in a URL, so they should not be in its messages; they are
    /// scrubbed anyway. Very short ones are skipped: they would mangle every word without hiding
    /// anything.
    fn scrub(&self, mut detail: String) -> String {
        let embedded = self
            .url
            .embedded_basic
            .iter()
            .map(|(_, password)| password.clone());
        for secret in self.auth.secrets().into_iter().chain(embedded) {
            if secret.len() >= MIN_SCRUBBED_SECRET_LEN {
                detail = detail.replace(&secret, "***");
            }
        }
        detail
    }

    /// An authentication failure; for an SSH key that cannot be unlocked (a wrong or missing
    /// passphrase), [`SourceError::SshKeyPassphrase`] instead.
    fn auth_failed(&self, detail: String) -> SourceError {
        self.locked_key_error()
            .unwrap_or_else(|| SourceError::AuthFailed {
                url: self.display_url(),
                detail,
            })
    }
}

impl Transport<'_> {
    /// After an SSH authentication failure: was it the key's passphrase (wrong, or missing for an
    /// encrypted key)? `ssh-keygen -y` tries to decrypt the key locally, with the passphrase from
    /// the askpass script (never in argv), so this is told apart from a key the server refuses.
    fn locked_key_error(&self) -> Option<SourceError> {
        let Auth::Ssh { private_key, .. } = self.auth else {
            return None;
        };
        let mut command = std::process::Command::new("ssh-keygen");
        command
            .arg("-y")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        match &self.askpass {
            Some(askpass) => {
                command.envs(askpass.env());
            }
            None => {
                command.args(["-P", ""]);
            }
        }
        let output = command.arg("-f").arg(private_key).output().ok()?;
        if output.status.success()
            || ssh_diagnosis(&String::from_utf8_lossy(&output.stderr))
                != Some(SshProblem::KeyPassphrase)
        {
            return None;
        }
        Some(SourceError::SshKeyPassphrase {
            url: self.display_url(),
            key: private_key.display().to_string(),
            reason: if self.askpass.is_some() {
                "the passphrase is wrong"
            } else {
                "the key is encrypted and no passphrase was given"
            }
            .to_owned(),
        })
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn remote_refs(listing: &[gix::protocol::handshake::Ref]) -> Vec<RemoteRef> {
    use gix::protocol::handshake::Ref;
    let mut refs: Vec<RemoteRef> = listing
        .iter()
        .filter_map(|r| match r {
            Ref::Direct {
                full_ref_name,
                object,
            } => Some((full_ref_name, *object, *object)),
            Ref::Peeled {
                full_ref_name,
                tag,
                object,
            } => Some((full_ref_name, *tag, *object)),
            Ref::Symbolic { .. } | Ref::Unborn { .. } => None,
        })
        .filter_map(|(name, target, commit)| {
            let name = String::from_utf8(name.to_vec()).ok()?;
            (name.starts_with("refs/heads/") || name.starts_with("refs/tags/")).then_some(
                RemoteRef {
                    name,
                    target,
                    commit,
                },
            )
        })
        .collect();
    refs.sort_by(|a, b| a.name.cmp(&b.name));
    refs
}

fn local_refs(
    repo: &gix::Repository,
    mirror: &Path,
) -> Result<BTreeMap<String, gix::ObjectId>, SourceError> {
    let platform = repo
        .references()
        .map_err(|e| SourceError::cache(mirror, e))?;
    let mut refs = BTreeMap::new();
    for reference in platform.all().map_err(|e| SourceError::cache(mirror, e))? {
        let reference = reference.map_err(|e| SourceError::cache(mirror, e))?;
        let name = reference.name().as_bstr().to_string();
        if !(name.starts_with("refs/heads/") || name.starts_with("refs/tags/")) {
            continue;
        }
        if let Some(id) = reference.target().try_id() {
            refs.insert(name, id.to_owned());
        }
    }
    Ok(refs)
}

/// Removes mirror refs that the remote deleted, so a deleted branch is not served from the cache.
fn prune(
    repo: &gix::Repository,
    mirror: &Path,
    local: &BTreeMap<String, gix::ObjectId>,
    remote: &BTreeMap<String, gix::ObjectId>,
) -> Result<(), SourceError> {
    for name in local.keys().filter(|name| !remote.contains_key(*name)) {
        if let Ok(reference) = repo.find_reference(name.as_str()) {
            reference
                .delete()
                .map_err(|e| SourceError::cache(mirror, e))?;
        }
    }
    Ok(())
}

pub(crate) fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_size(&entry.path()),
            Ok(_) => entry.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}
