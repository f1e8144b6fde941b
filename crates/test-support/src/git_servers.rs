//! Real git servers on loopback for source-stage tests, each with its own temp directory and free
//! port, stopped on drop:
//! - [`GitDaemon`]: `git daemon` for `git://`;
//! - [`HttpGitServer`]: nginx + fcgiwrap + `git http-backend` with basic auth (smart HTTP);
//! - [`SshGitServer`]: `sshd` with its own host key, one authorized client key restricted to
//!   `git-shell`.
//!
//! Plus [`GitRepos`], which creates bare repositories, commits (optionally signed with SSH or OpenPGP
//! keys) and pushes with the `git` CLI, isolated from the user's git configuration.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A scratch directory that is removed on drop (read-only checkouts inside are made writable first).
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(label: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("capstan-git-{label}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create scratch dir");
        ScratchDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = Command::new("chmod")
            .args(["-R", "u+rwX"])
            .arg(&self.0)
            .status();
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (bound then released; servers bind it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on port {port}: {status}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not listen on port {port} within 20s");
}

fn stop(child: &mut Child) {
    // SIGTERM first so nginx and sshd take their workers down with them.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Runs `git` isolated from the host's configuration, with a fixed identity; panics with git's
/// output on failure. Returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_with_env(dir, args, &[])
}

pub fn git_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .envs(env.iter().copied())
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} in {} failed: {}{}",
        dir.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// How a commit is signed.
pub enum Signing<'a> {
    None,
    /// SSH signature with this private key file.
    Ssh(&'a Path),
    /// OpenPGP signature with this key (fingerprint) from this GNUPGHOME.
    OpenPgp {
        gnupg_home: &'a Path,
        fingerprint: &'a str,
    },
}

/// `git -c` options and environment that make git sign with `signing`.
fn signing_config<'a>(signing: &Signing<'a>) -> (Vec<String>, Vec<(&'static str, &'a str)>) {
    let mut args: Vec<String> = Vec::new();
    let mut env = Vec::new();
    match signing {
        Signing::None => {}
        Signing::Ssh(key) => {
            args.extend(["-c".into(), "gpg.format=ssh".into()]);
            args.extend(["-c".into(), format!("user.signingkey={}", key.display())]);
        }
        Signing::OpenPgp {
            gnupg_home,
            fingerprint,
        } => {
            args.extend(["-c".into(), format!("user.signingkey={fingerprint}")]);
            env.push(("GNUPGHOME", gnupg_home.to_str().expect("utf-8 path")));
        }
    }
    (args, env)
}

/// Bare repositories under one served root plus a working clone per repository to commit from.
pub struct GitRepos {
    dir: ScratchDir,
}

impl Default for GitRepos {
    fn default() -> Self {
        Self::new()
    }
}

impl GitRepos {
    pub fn new() -> Self {
        let dir = ScratchDir::new("repos");
        fs::create_dir_all(dir.path().join("served")).expect("served dir");
        fs::create_dir_all(dir.path().join("work")).expect("work dir");
        GitRepos { dir }
    }

    /// The directory servers export (bare repos are `<root>/<name>.git`).
    pub fn served_root(&self) -> PathBuf {
        self.dir.path().join("served")
    }

    pub fn bare_path(&self, name: &str) -> PathBuf {
        self.served_root().join(format!("{name}.git"))
    }

    fn work_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("work").join(name)
    }

    /// Creates `<name>.git` (bare, served) and a working clone of it.
    pub fn create(&self, name: &str) {
        let bare = self.bare_path(name);
        git(
            &self.served_root(),
            &["init", "--bare", "-q", &bare.display().to_string()],
        );
        // Smart HTTP and git daemon serve only what they are allowed to; allow everything.
        git(&bare, &["config", "http.receivepack", "true"]);
        git(&bare, &["config", "uploadpack.allowAnySHA1InWant", "true"]);
        fs::write(bare.join("git-daemon-export-ok"), "").expect("export marker");
        let work = self.work_path(name);
        git(
            self.dir.path(),
            &[
                "clone",
                "-q",
                &bare.display().to_string(),
                &work.display().to_string(),
            ],
        );
    }

    /// Writes `files` (path, content), commits them on `branch` and pushes; returns the commit id.
    pub fn commit(
        &self,
        name: &str,
        branch: &str,
        files: &[(&str, &str)],
        message: &str,
        signing: Signing<'_>,
    ) -> String {
        let work = self.work_path(name);
        let has_commits = Command::new("git")
            .current_dir(&work)
            .args(["rev-parse", "--verify", "-q", "HEAD"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if has_commits {
            let exists = git(&work, &["branch", "--list", branch]);
            if exists.is_empty() {
                git(&work, &["checkout", "-q", "-b", branch]);
            } else {
                git(&work, &["checkout", "-q", branch]);
            }
        } else {
            git(&work, &["checkout", "-q", "-b", branch]);
        }
        for (path, content) in files {
            let file = work.join(path);
            if let Some(parent) = file.parent() {
                fs::create_dir_all(parent).expect("parent dir");
            }
            fs::write(file, content).expect("write file");
        }
        git(&work, &["add", "-A"]);
        self.commit_staged(&work, message, &signing, &[]);
        git(&work, &["push", "-q", "--force", "origin", branch]);
        git(&work, &["rev-parse", "HEAD"])
    }

    fn commit_staged(&self, work: &Path, message: &str, signing: &Signing<'_>, extra: &[&str]) {
        let (mut args, env) = signing_config(signing);
        args.extend([
            "commit".into(),
            "-q".into(),
            "--allow-empty".into(),
            "-m".into(),
            message.into(),
        ]);
        if !matches!(signing, Signing::None) {
            args.push("-S".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        git_with_env(work, &refs, &env);
    }

    /// Replaces the history of `branch` with one new commit (force push); returns it.
    pub fn rewrite_history(&self, name: &str, branch: &str, files: &[(&str, &str)]) -> String {
        let work = self.work_path(name);
        git(&work, &["checkout", "-q", "--orphan", "rewritten-tmp"]);
        git(&work, &["rm", "-rfq", "--ignore-unmatch", "."]);
        for (path, content) in files {
            fs::write(work.join(path), content).expect("write file");
        }
        git(&work, &["add", "-A"]);
        self.commit_staged(&work, "rewritten", &Signing::None, &[]);
        git(&work, &["branch", "-f", branch]);
        git(&work, &["checkout", "-q", branch]);
        git(&work, &["branch", "-D", "rewritten-tmp"]);
        git(&work, &["push", "-q", "--force", "origin", branch]);
        git(&work, &["rev-parse", "HEAD"])
    }

    /// Tags the head of `branch` (annotated when `message` is given) and pushes the tag.
    pub fn tag(&self, name: &str, branch: &str, tag: &str, message: Option<&str>) {
        let work = self.work_path(name);
        match message {
            Some(message) => git(&work, &["tag", "-a", tag, "-m", message, branch]),
            None => git(&work, &["tag", tag, branch]),
        };
        git(&work, &["push", "-q", "origin", tag]);
    }

    /// Creates a signed annotated tag on the head of `branch` and pushes it; returns the tag
    /// object's id.
    pub fn tag_signed(
        &self,
        name: &str,
        branch: &str,
        tag: &str,
        message: &str,
        signing: Signing<'_>,
    ) -> String {
        let work = self.work_path(name);
        let (mut args, env) = signing_config(&signing);
        args.extend(["tag", "-s", tag, "-m", message, branch].map(String::from));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        git_with_env(&work, &refs, &env);
        git(&work, &["push", "-q", "origin", tag]);
        git(&work, &["rev-parse", &format!("refs/tags/{tag}")])
    }

    /// Replaces the head commit of `branch` by a copy whose message was altered but whose signature
    /// was kept (so the signature no longer matches), and force-pushes it; returns the forged id.
    pub fn tamper_head(&self, name: &str, branch: &str) -> String {
        self.rewrite_head(name, branch, |raw| {
            let (headers, message) = raw.split_once("\n\n").expect("commit message");
            format!("{headers}\n\ntampered: {message}")
        })
    }

    /// Replaces the head commit of `branch` by a copy whose signature bytes were corrupted (one
    /// base64 character of the armoured signature flipped), and force-pushes it; returns its id.
    pub fn corrupt_head_signature(&self, name: &str, branch: &str) -> String {
        self.rewrite_head(name, branch, |raw| {
            let end = raw.find(" -----END ").expect("armoured signature");
            // The last armour line long enough to be signature data (not a `=CRC` line); its
            // characters encode the tail of the signature bytes.
            let mut line_end = end - 1;
            loop {
                let line_start = raw[..line_end].rfind('\n').expect("armour line") + 1;
                if line_end - line_start >= 20 {
                    let at = line_start + 10;
                    let flipped = if &raw[at..=at] == "A" { "B" } else { "A" };
                    return format!("{}{flipped}{}", &raw[..at], &raw[at + 1..]);
                }
                line_end = line_start - 1;
            }
        })
    }

    fn rewrite_head(&self, name: &str, branch: &str, edit: impl Fn(&str) -> String) -> String {
        let work = self.work_path(name);
        git(&work, &["checkout", "-q", branch]);
        let raw = git(&work, &["cat-file", "commit", "HEAD"]);
        let forged_text = edit(&format!("{raw}\n"));
        let forged_file = self.dir.path().join("forged-commit");
        fs::write(&forged_file, forged_text).expect("forged commit");
        let forged = git(
            &work,
            &[
                "hash-object",
                "-t",
                "commit",
                "-w",
                "--literally",
                &forged_file.display().to_string(),
            ],
        );
        git(&work, &["reset", "-q", "--hard", &forged]);
        git(&work, &["push", "-q", "--force", "origin", branch]);
        forged
    }

    pub fn delete_branch(&self, name: &str, branch: &str) {
        git(
            &self.work_path(name),
            &["push", "-q", "origin", "--delete", branch],
        );
    }

    /// Commits `count` files of `bytes_each` random (incompressible) bytes in one commit, so the pack
    /// is about `count * bytes_each` bytes; returns the commit id.
    pub fn commit_random_blobs(
        &self,
        name: &str,
        branch: &str,
        count: usize,
        bytes_each: usize,
    ) -> String {
        use std::io::Read;
        let work = self.work_path(name);
        let mut random = fs::File::open("/dev/urandom").expect("/dev/urandom");
        for i in 0..count {
            let mut data = vec![0u8; bytes_each];
            random.read_exact(&mut data).expect("random bytes");
            fs::write(work.join(format!("random{i:03}.bin")), data).expect("random file");
        }
        self.commit(name, branch, &[], "random blobs", Signing::None)
    }

    /// Commits `count` generated files in one commit (for large-repository tests and benchmarks).
    pub fn commit_many_files(&self, name: &str, branch: &str, count: usize) -> String {
        let work = self.work_path(name);
        for i in 0..count {
            let dir = work.join(format!("dir{:03}", i % 100));
            fs::create_dir_all(&dir).expect("dir");
            fs::write(
                dir.join(format!("file{i:05}.yaml")),
                format!("index: {i}\nname: file-{i}\n"),
            )
            .expect("file");
        }
        self.commit(name, branch, &[], &format!("{count} files"), Signing::None)
    }
}

/// `git daemon` serving a [`GitRepos`] root on `git://127.0.0.1:<port>/`.
pub struct GitDaemon {
    child: Child,
    pub port: u16,
}

impl GitDaemon {
    pub fn start(served_root: &Path) -> Self {
        let port = free_port();
        let mut child = Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", served_root.display()))
            .arg(served_root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        wait_for_port(port, &mut child, "git daemon");
        GitDaemon { child, port }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}.git", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// The token [`HttpGitServer::bearer_url`] accepts.
pub const BEARER_TOKEN: &str = "test-bearer-token-42";

/// nginx + fcgiwrap + `git http-backend` (smart HTTP) with basic auth on `http://127.0.0.1:<port>/`,
/// and with bearer-token auth ([`BEARER_TOKEN`]) under `/bearer/`.
pub struct HttpGitServer {
    nginx: Child,
    fcgiwrap: Child,
    _dir: ScratchDir,
    pub port: u16,
    pub username: String,
    pub password: String,
}

impl HttpGitServer {
    pub fn start(served_root: &Path, username: &str, password: &str) -> Self {
        let dir = ScratchDir::new("http");
        let base = dir.path();
        let socket = base.join("fcgiwrap.sock");
        let mut fcgiwrap = Command::new("fcgiwrap")
            .arg("-s")
            .arg(format!("unix:{}", socket.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start fcgiwrap (apt-get install fcgiwrap)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "fcgiwrap did not create its socket"
            );
            if let Ok(Some(status)) = fcgiwrap.try_wait() {
                panic!("fcgiwrap exited: {status}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let hash = Command::new("openssl")
            .args(["passwd", "-apr1", password])
            .output()
            .expect("openssl passwd");
        fs::write(
            base.join("htpasswd"),
            format!(
                "{username}:{}\n",
                String::from_utf8_lossy(&hash.stdout).trim()
            ),
        )
        .expect("htpasswd");
        fs::create_dir_all(base.join("tmp")).expect("nginx tmp");
        let port = free_port();
        let b = base.display();
        let config = format!(
            r#"worker_processes 1;
user root;
daemon off;
error_log {b}/error.log;
pid {b}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {b}/tmp/body;
  fastcgi_temp_path {b}/tmp/fastcgi;
  proxy_temp_path {b}/tmp/proxy;
  uwsgi_temp_path {b}/tmp/uwsgi;
  scgi_temp_path {b}/tmp/scgi;
  server {{
    listen 127.0.0.1:{port};
    location ~ ^/bearer(/.*)$ {{
      if ($http_authorization != "Bearer {bearer_token}") {{ return 401; }}
      client_max_body_size 0;
      include /etc/nginx/fastcgi_params;
      fastcgi_pass unix:{socket};
      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT {root};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO $1;
      fastcgi_param GIT_PROTOCOL $http_git_protocol;
    }}
    location / {{
      auth_basic "git";
      auth_basic_user_file {b}/htpasswd;
      client_max_body_size 0;
      include /etc/nginx/fastcgi_params;
      fastcgi_pass unix:{socket};
      fastcgi_param SCRIPT_FILENAME /usr/lib/git-core/git-http-backend;
      fastcgi_param GIT_PROJECT_ROOT {root};
      fastcgi_param GIT_HTTP_EXPORT_ALL "";
      fastcgi_param PATH_INFO $uri;
      fastcgi_param REMOTE_USER $remote_user;
      fastcgi_param GIT_PROTOCOL $http_git_protocol;
    }}
  }}
}}
"#,
            socket = socket.display(),
            root = served_root.display(),
            bearer_token = BEARER_TOKEN,
        );
        let config_path = base.join("nginx.conf");
        fs::write(&config_path, config).expect("nginx.conf");
        let mut nginx = Command::new("nginx")
            .arg("-p")
            .arg(base)
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx (apt-get install nginx)");
        wait_for_port(port, &mut nginx, "nginx");
        HttpGitServer {
            nginx,
            fcgiwrap,
            _dir: dir,
            port,
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/{repo}.git", self.port)
    }

    /// The same repository behind bearer-token auth.
    pub fn bearer_url(&self, repo: &str) -> String {
        format!("http://127.0.0.1:{}/bearer/{repo}.git", self.port)
    }
}

impl Drop for HttpGitServer {
    fn drop(&mut self) {
        stop(&mut self.nginx);
        stop(&mut self.fcgiwrap);
    }
}

/// Generates an ed25519 key pair without passphrase at `path` (public key at `path.pub`).
pub fn ssh_keygen(path: &Path, comment: &str) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen failed");
}

/// Generates an ed25519 key pair protected by `passphrase` at `path` (public key at `path.pub`).
pub fn ssh_keygen_with_passphrase(path: &Path, comment: &str, passphrase: &str) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", passphrase, "-C", comment, "-f"])
        .arg(path)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen failed");
}

/// `sshd` on loopback with its own host key; one client key may log in, and only into `git-shell`.
pub struct SshGitServer {
    child: Child,
    dir: ScratchDir,
    pub port: u16,
    pub user: String,
}

impl SshGitServer {
    pub fn start() -> Self {
        let dir = ScratchDir::new("sshd");
        let base = dir.path();
        ssh_keygen(&base.join("host_key"), "host");
        ssh_keygen(&base.join("client_key"), "client");
        let client_pub = fs::read_to_string(base.join("client_key.pub")).expect("client pub");
        fs::write(
            base.join("authorized_keys"),
            format!(
                "command=\"git-shell -c \\\"$SSH_ORIGINAL_COMMAND\\\"\",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty {client_pub}"
            ),
        )
        .expect("authorized_keys");
        // sshd refuses to start without its privilege-separation directory.
        fs::create_dir_all("/run/sshd").expect("/run/sshd");
        let user = String::from_utf8(
            Command::new("id")
                .arg("-un")
                .output()
                .expect("id -un")
                .stdout,
        )
        .expect("utf-8 user")
        .trim()
        .to_owned();
        let port = free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {b}/host_key\nPidFile {b}/sshd.pid\n\
             AuthorizedKeysFile {b}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nAllowUsers {user}\n",
            b = base.display()
        );
        fs::write(base.join("sshd_config"), config).expect("sshd_config");
        let mut child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-f")
            .arg(base.join("sshd_config"))
            .arg("-E")
            .arg(base.join("sshd.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sshd (apt-get install openssh-server)");
        wait_for_port(port, &mut child, "sshd");
        SshGitServer {
            child,
            dir,
            port,
            user,
        }
    }

    /// ssh:// URL of a repository given by absolute path.
    pub fn url(&self, bare_repo: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            bare_repo.display()
        )
    }

    /// Lets one more key log in (into `git-shell`); `public_key` is the `.pub` file.
    pub fn authorize(&self, public_key: &Path) {
        let key = fs::read_to_string(public_key).expect("public key");
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("authorized_keys"))
            .expect("authorized_keys");
        std::io::Write::write_all(
            &mut file,
            format!(
                "command=\"git-shell -c \\\"$SSH_ORIGINAL_COMMAND\\\"\",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty {key}"
            )
            .as_bytes(),
        )
        .expect("append authorized key");
    }

    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// A known_hosts file that trusts this server's host key.
    pub fn known_hosts(&self) -> PathBuf {
        let path = self.dir.path().join("known_hosts");
        let host_pub = fs::read_to_string(self.dir.path().join("host_key.pub")).expect("host pub");
        let mut fields = host_pub.split_whitespace();
        let (kind, key) = (
            fields.next().expect("key type"),
            fields.next().expect("key"),
        );
        fs::write(&path, format!("[127.0.0.1]:{} {kind} {key}\n", self.port)).expect("known_hosts");
        path
    }
}

impl Drop for SshGitServer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// An OpenPGP signing key in its own GNUPGHOME (for signed-commit tests).
pub struct GpgKey {
    pub home: ScratchDir,
    pub fingerprint: String,
    /// The ASCII-armoured public key file.
    pub public_key: PathBuf,
}

impl GpgKey {
    pub fn generate(uid: &str) -> Self {
        let home = ScratchDir::new("gnupg");
        let run = |args: &[&str]| {
            let output = Command::new("gpg")
                .env("GNUPGHOME", home.path())
                .args([
                    "--batch",
                    "--quiet",
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    "",
                ])
                .args(args)
                .output()
                .expect("run gpg");
            assert!(
                output.status.success(),
                "gpg {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout).into_owned()
        };
        let _ = fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        );
        run(&["--quick-gen-key", uid, "ed25519", "sign", "never"]);
        let listing = run(&["--with-colons", "--list-secret-keys"]);
        let fingerprint = listing
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("fingerprint")
            .to_owned();
        let public_key = home.path().join("public.asc");
        let armored = run(&["--armor", "--export", &fingerprint]);
        fs::write(&public_key, armored).expect("public key");
        GpgKey {
            home,
            fingerprint,
            public_key,
        }
    }
}

impl Drop for GpgKey {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "all"])
            .status();
    }
}
