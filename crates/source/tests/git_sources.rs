//! The source stage against real git servers on loopback (git daemon, nginx + git http-backend with
//! basic auth, sshd + git-shell). Every test owns its repositories, servers, ports and cache.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use capstan_source::{
    Auth, CacheOptions, Reference, Secret, SourceCache, SourceError, SourceSpec, Verification,
};
use capstan_test_support::git_servers::{
    BEARER_TOKEN, GitDaemon, GitRepos, GpgKey, HttpGitServer, ScratchDir, Signing, SshGitServer,
    ssh_keygen, ssh_keygen_with_passphrase,
};

fn new_cache(dir: &ScratchDir) -> SourceCache {
    SourceCache::new(CacheOptions::new(dir.path().join("cache")))
}

fn spec(url: &str, reference: &str) -> SourceSpec {
    SourceSpec {
        url: url.to_owned(),
        reference: Reference::parse(reference).expect("valid reference"),
        auth: Auth::None,
        verification: None,
    }
}

fn read(checkout: &Path, file: &str) -> String {
    std::fs::read_to_string(checkout.join(file)).expect("file in checkout")
}

#[tokio::test]
async fn first_fetch_over_git_daemon_yields_revision_metadata_and_read_only_checkout() {
    let repos = GitRepos::new();
    repos.create("app");
    let sha = repos.commit(
        "app",
        "main",
        &[("deploy/app.yaml", "kind: ConfigMap\n")],
        "add app",
        Signing::None,
    );
    let daemon = GitDaemon::start(&repos.served_root());
    let scratch = ScratchDir::new("first");
    let cache = new_cache(&scratch);

    let artifact = cache
        .fetch(&spec(&daemon.url("app"), "main"))
        .await
        .expect("fetch");

    assert_eq!(artifact.commit, sha);
    assert_eq!(artifact.revision, format!("main@sha1:{sha}"));
    assert_eq!(artifact.metadata.author.name, "Test Author");
    assert_eq!(artifact.metadata.committer.email, "committer@example.com");
    assert_eq!(artifact.metadata.message.trim(), "add app");
    assert!(
        artifact.digest.starts_with("sha256:") && artifact.digest.len() == 71,
        "{}",
        artifact.digest
    );
    assert_eq!(
        read(&artifact.checkout, "deploy/app.yaml"),
        "kind: ConfigMap\n"
    );
    let mode = std::fs::metadata(artifact.checkout.join("deploy/app.yaml"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o222, 0, "checkout files must be read-only");
    let stats = cache.stats();
    assert_eq!((stats.ref_listings, stats.fetches), (1, 1));
    // Shallow by default: only the one commit was fetched.
    let mirror = cache.mirror_path(&daemon.url("app")).expect("mirror");
    assert!(mirror.join("shallow").exists(), "mirror should be shallow");
}

#[tokio::test]
async fn no_new_commit_means_no_fetch_and_a_new_commit_is_fetched() {
    let repos = GitRepos::new();
    repos.create("app");
    let first = repos.commit("app", "main", &[("a.txt", "1")], "one", Signing::None);
    let daemon = GitDaemon::start(&repos.served_root());
    let scratch = ScratchDir::new("incremental");
    let cache = new_cache(&scratch);
    let source = spec(&daemon.url("app"), "main");

    let a = cache.fetch(&source).await.expect("first fetch");
    let b = cache.fetch(&source).await.expect("second fetch");
    assert_eq!(
        (a.commit.as_str(), b.commit.as_str()),
        (first.as_str(), first.as_str())
    );
    assert_eq!(a.checkout, b.checkout);
    assert_eq!(cache.stats().ref_listings, 2);
    assert_eq!(
        cache.stats().fetches,
        1,
        "unchanged remote must not be fetched"
    );

    let second = repos.commit("app", "main", &[("a.txt", "2")], "two", Signing::None);
    let c = cache.fetch(&source).await.expect("third fetch");
    assert_eq!(c.commit, second);
    assert_eq!(read(&c.checkout, "a.txt"), "2");
    assert_ne!(c.digest, a.digest);
    assert_eq!(cache.stats().fetches, 2);
}

#[tokio::test]
async fn force_push_and_deleted_branch_over_http_with_basic_auth() {
    let repos = GitRepos::new();
    repos.create("app");
    repos.commit("app", "main", &[("a.txt", "1")], "one", Signing::None);
    repos.commit(
        "app",
        "feature",
        &[("f.txt", "f")],
        "feature",
        Signing::None,
    );
    let http = HttpGitServer::start(&repos.served_root(), "alice", "s3cret-pw");
    let scratch = ScratchDir::new("forcepush");
    let cache = new_cache(&scratch);
    let mut source = spec(&http.url("app"), "main");
    source.auth = Auth::Basic {
        username: "alice".into(),
        password: "s3cret-pw".into(),
    };
    cache.fetch(&source).await.expect("first fetch");

    let rewritten = repos.rewrite_history("app", "main", &[("b.txt", "new history")]);
    let artifact = cache.fetch(&source).await.expect("fetch after force push");
    assert_eq!(artifact.commit, rewritten);
    assert_eq!(read(&artifact.checkout, "b.txt"), "new history");
    assert!(!artifact.checkout.join("a.txt").exists());

    let mut feature = source.clone();
    feature.reference = Reference::Branch("feature".into());
    cache.fetch(&feature).await.expect("feature exists");
    repos.delete_branch("app", "feature");
    let err = cache.fetch(&feature).await.expect_err("deleted branch");
    assert!(
        matches!(&err, SourceError::RefNotFound { reference, .. } if reference == "branch feature"),
        "{err:?}"
    );
    assert!(err.to_string().contains(&http.url("app")), "{err}");
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_without_the_password() {
    let repos = GitRepos::new();
    repos.create("app");
    repos.commit("app", "main", &[("a.txt", "1")], "one", Signing::None);
    let http = HttpGitServer::start(&repos.served_root(), "alice", "right-pw");
    let scratch = ScratchDir::new("wrongpw");
    let cache = new_cache(&scratch);

    let mut source = spec(&http.url("app"), "main");
    source.auth = Auth::Basic {
        username: "alice".into(),
        password: "wrong-pw-123".into(),
    };
    let err = cache.fetch(&source).await.expect_err("wrong password");
    assert!(matches!(err, SourceError::AuthFailed { .. }), "{err:?}");
    assert!(!err.to_string().contains("wrong-pw-123"), "{err}");
    assert!(!format!("{err:?}").contains("wrong-pw-123"), "{err:?}");

    let anonymous = spec(&http.url("app"), "main");
    let err = cache.fetch(&anonymous).await.expect_err("no credentials");
    assert!(matches!(err, SourceError::AuthFailed { .. }), "{err:?}");

    // Credentials embedded in the URL work and never reach the cache path or the artifact.
    let embedded = spec(
        &format!("http://alice:right-pw@127.0.0.1:{}/app.git", http.port),
        "main",
    );
    let artifact = cache.fetch(&embedded).await.expect("embedded credentials");
    assert!(!artifact.url.contains("right-pw"));
    for entry in walk(&scratch.path().join("cache/mirrors")) {
        assert!(
            !entry.contains("right-pw") && !entry.contains("alice"),
            "{entry}"
        );
    }
}

#[tokio::test]
async fn bearer_token_is_sent_and_a_wrong_token_is_an_auth_error() {
    let repos = GitRepos::new();
    repos.create("app");
    let sha = repos.commit("app", "main", &[("a.txt", "1")], "one", Signing::None);
    let http = HttpGitServer::start(&repos.served_root(), "u", "p");
    let scratch = ScratchDir::new("bearer");
    let cache = new_cache(&scratch);
    let mut source = spec(&http.bearer_url("app"), "main");
    source.auth = Auth::Bearer {
        token: BEARER_TOKEN.into(),
    };
    assert_eq!(
        cache.fetch(&source).await.expect("bearer fetch").commit,
        sha
    );

    source.auth = Auth::Bearer {
        token: "wrong-token-value".into(),
    };
    let err = cache.fetch(&source).await.expect_err("wrong token");
    assert!(matches!(err, SourceError::AuthFailed { .. }), "{err:?}");
    assert!(
        !format!("{err} {err:?}").contains("wrong-token-value"),
        "{err:?}"
    );
}

#[tokio::test]
async fn credentials_are_not_sent_in_clear_text_to_remote_hosts() {
    let scratch = ScratchDir::new("cleartext");
    let cache = new_cache(&scratch);
    let mut source = spec("http://git.example.invalid/app.git", "main");
    source.auth = Auth::Basic {
        username: "alice".into(),
        password: "do-not-leak".into(),
    };
    let err = cache.fetch(&source).await.expect_err("clear text refused");
    assert!(matches!(err, SourceError::InvalidUrl { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("do-not-leak"));
}

fn walk(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path().display().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn missing_repository_is_named() {
    let repos = GitRepos::new();
    let daemon = GitDaemon::start(&repos.served_root());
    let http = HttpGitServer::start(&repos.served_root(), "u", "p");
    let scratch = ScratchDir::new("missing");
    let cache = new_cache(&scratch);

    let err = cache
        .fetch(&spec(&daemon.url("nope"), "main"))
        .await
        .expect_err("missing over git://");
    assert!(
        matches!(err, SourceError::RepositoryNotFound { .. }),
        "{err:?}"
    );
    let mut source = spec(&http.url("nope"), "main");
    source.auth = Auth::Basic {
        username: "u".into(),
        password: "p".into(),
    };
    let err = cache.fetch(&source).await.expect_err("missing over http");
    assert!(
        matches!(err, SourceError::RepositoryNotFound { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("nope.git"), "{err}");
}

#[tokio::test]
async fn tags_and_semver_range_pick_the_highest_matching_tag() {
    let repos = GitRepos::new();
    repos.create("app");
    let mut commits = Vec::new();
    for (tag, annotated) in [
        ("v1.2.0", false),
        ("v1.10.0", true),
        ("v1.9.3", false),
        ("v2.0.0", true),
    ] {
        commits.push(repos.commit("app", "main", &[("version", tag)], tag, Signing::None));
        repos.tag("app", "main", tag, annotated.then_some("release"));
    }
    let daemon = GitDaemon::start(&repos.served_root());
    let scratch = ScratchDir::new("semver");
    let cache = new_cache(&scratch);

    let artifact = cache
        .fetch(&spec(&daemon.url("app"), "semver:>=1.2 <2"))
        .await
        .expect("semver");
    assert_eq!(artifact.revision, format!("v1.10.0@sha1:{}", commits[1]));
    assert_eq!(read(&artifact.checkout, "version"), "v1.10.0");

    let tagged = cache
        .fetch(&spec(&daemon.url("app"), "tag:v1.2.0"))
        .await
        .expect("tag");
    assert_eq!(tagged.commit, commits[0]);
    let annotated = cache
        .fetch(&spec(&daemon.url("app"), "tag:v2.0.0"))
        .await
        .expect("annotated tag");
    assert_eq!(
        annotated.commit, commits[3],
        "annotated tags are peeled to their commit"
    );

    let err = cache
        .fetch(&spec(&daemon.url("app"), "semver:>=3"))
        .await
        .expect_err("no match");
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err:?}");
    let err = cache
        .fetch(&spec(&daemon.url("app"), "tag:v9"))
        .await
        .expect_err("no tag");
    assert!(err.to_string().contains("tag v9"), "{err}");
}

#[tokio::test]
async fn pinned_old_commit_deepens_the_shallow_mirror() {
    let repos = GitRepos::new();
    repos.create("app");
    let commits: Vec<String> = (0..6)
        .map(|i| {
            repos.commit(
                "app",
                "main",
                &[("n", &i.to_string())],
                &format!("c{i}"),
                Signing::None,
            )
        })
        .collect();
    let daemon = GitDaemon::start(&repos.served_root());
    let scratch = ScratchDir::new("pinned");
    let cache = new_cache(&scratch);

    let head = cache
        .fetch(&spec(&daemon.url("app"), "main"))
        .await
        .expect("head");
    assert_eq!(head.commit, commits[5]);
    assert_eq!(cache.stats().deepenings, 0);

    let old = cache
        .fetch(&spec(&daemon.url("app"), &commits[1]))
        .await
        .expect("old commit");
    assert_eq!(old.revision, format!("sha1:{}", commits[1]));
    assert_eq!(read(&old.checkout, "n"), "1");
    assert!(cache.stats().deepenings >= 1);

    let pin = cache
        .fetch(&spec(&daemon.url("app"), &format!("main@{}", commits[2])))
        .await
        .expect("branch + commit");
    assert_eq!(pin.revision, format!("main@sha1:{}", commits[2]));
    assert_eq!(read(&pin.checkout, "n"), "2");

    let missing = "0000000000000000000000000000000000000001";
    let err = cache
        .fetch(&spec(&daemon.url("app"), missing))
        .await
        .expect_err("no such commit");
    assert!(err.to_string().contains(missing), "{err}");
    assert!(matches!(err, SourceError::RefNotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn ssh_with_key_and_known_hosts_fetches_and_refuses_bad_keys_and_hosts() {
    let repos = GitRepos::new();
    repos.create("app");
    let sha = repos.commit("app", "main", &[("a.txt", "ssh")], "one", Signing::None);
    let sshd = SshGitServer::start();
    let scratch = ScratchDir::new("ssh");
    let cache = new_cache(&scratch);
    let url = sshd.url(&repos.bare_path("app"));
    let with_auth = |key: &Path, known_hosts: &Path| {
        let mut source = spec(&url, "main");
        source.auth = Auth::Ssh {
            private_key: key.to_owned(),
            known_hosts: Some(known_hosts.to_owned()),
            passphrase: None,
        };
        source
    };

    let artifact = cache
        .fetch(&with_auth(&sshd.client_key(), &sshd.known_hosts()))
        .await
        .expect("ssh fetch");
    assert_eq!(artifact.commit, sha);
    assert_eq!(read(&artifact.checkout, "a.txt"), "ssh");

    let stranger = scratch.path().join("stranger_key");
    ssh_keygen(&stranger, "stranger");
    let err = cache
        .fetch(&with_auth(&stranger, &sshd.known_hosts()))
        .await
        .expect_err("unauthorized key");
    assert!(matches!(err, SourceError::AuthFailed { .. }), "{err:?}");

    let empty_known_hosts = scratch.path().join("known_hosts_empty");
    std::fs::write(&empty_known_hosts, "").expect("write");
    let err = cache
        .fetch(&with_auth(&sshd.client_key(), &empty_known_hosts))
        .await
        .expect_err("unknown host");
    assert!(matches!(err, SourceError::HostKeyUnknown { .. }), "{err:?}");

    let other_host = scratch.path().join("other_host_key");
    ssh_keygen(&other_host, "other");
    let other_pub = std::fs::read_to_string(other_host.with_extension("pub")).expect("pub");
    let mut fields = other_pub.split_whitespace();
    let changed_known_hosts = scratch.path().join("known_hosts_changed");
    std::fs::write(
        &changed_known_hosts,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port,
            fields.next().expect("type"),
            fields.next().expect("key")
        ),
    )
    .expect("write");
    let err = cache
        .fetch(&with_auth(&sshd.client_key(), &changed_known_hosts))
        .await
        .expect_err("changed host key");
    assert!(matches!(err, SourceError::HostKeyChanged { .. }), "{err:?}");
}

#[tokio::test]
async fn ssh_signed_commit_is_accepted_and_unsigned_or_untrusted_are_refused() {
    let repos = GitRepos::new();
    repos.create("app");
    let keys = ScratchDir::new("signing");
    let trusted = keys.path().join("trusted");
    let untrusted = keys.path().join("untrusted");
    ssh_keygen(&trusted, "trusted");
    ssh_keygen(&untrusted, "untrusted");
    let allowed = keys.path().join("allowed_signers");
    let trusted_pub = std::fs::read_to_string(trusted.with_extension("pub")).expect("pub");
    std::fs::write(
        &allowed,
        format!("committer@example.com namespaces=\"git\" {trusted_pub}"),
    )
    .expect("allowed");

    let daemon = GitDaemon::start(&repos.served_root());
    let scratch = ScratchDir::new("verify-ssh");
    let cache = new_cache(&scratch);
    let mut source = spec(&daemon.url("app"), "main");
    source.verification = Some(Verification {
        ssh_allowed_signers: Some(allowed.clone()),
        openpgp_public_keys: Vec::new(),
    });

    let signed = repos.commit(
        "app",
        "main",
        &[("a", "1")],
        "signed",
        Signing::Ssh(&trusted),
    );
    let artifact = cache.fetch(&source).await.expect("trusted signature");
    assert_eq!(artifact.commit, signed);

    let unsigned = repos.commit("app", "main", &[("a", "2")], "unsigned", Signing::None);
    let err = cache.fetch(&source).await.expect_err("unsigned");
    assert!(
        matches!(err, SourceError::SignatureMissing { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(&unsigned), "{err}");

    let wrong = repos.commit(
        "app",
        "main",
        &[("a", "3")],
        "wrong key",
        Signing::Ssh(&untrusted),
    );
    let err = cache.fetch(&source).await.expect_err("untrusted key");
    match &err {
        SourceError::SignatureUntrusted { object, key_id, .. } => {
            assert!(object.contains(&wrong), "{err}");
            assert!(key_id.starts_with("SHA256:"), "{err}");
        }
        other => panic!("expected SignatureUntrusted, got {other:?}"),
    }
}

#[tokio::test]
async fn openpgp_signed_commit_is_accepted_only_with_the_trusted_key() {
    let repos = GitRepos::new();
    repos.create("app");
    let trusted = GpgKey::generate("Trusted <trusted@example.com>");
    let other = GpgKey::generate("Other <other@example.com>");
    let daemon = GitDaemon::start(&repos.served_root());
    let scratch = ScratchDir::new("verify-pgp");
    let cache = new_cache(&scratch);
    let mut source = spec(&daemon.url("app"), "main");
    source.verification = Some(Verification {
        ssh_allowed_signers: None,
        openpgp_public_keys: vec![trusted.public_key.clone()],
    });

    let signed = repos.commit(
        "app",
        "main",
        &[("a", "1")],
        "pgp signed",
        Signing::OpenPgp {
            gnupg_home: trusted.home.path(),
            fingerprint: &trusted.fingerprint,
        },
    );
    assert_eq!(
        cache.fetch(&source).await.expect("trusted pgp").commit,
        signed
    );

    repos.commit(
        "app",
        "main",
        &[("a", "2")],
        "signed by other",
        Signing::OpenPgp {
            gnupg_home: other.home.path(),
            fingerprint: &other.fingerprint,
        },
    );
    let err = cache.fetch(&source).await.expect_err("untrusted pgp key");
    match &err {
        SourceError::SignatureUntrusted { key_id, .. } => {
            assert!(
                other.fingerprint.ends_with(key_id.as_str()),
                "{key_id} vs {}",
                other.fingerprint
            )
        }
        other => panic!("expected SignatureUntrusted, got {other:?}"),
    }
}

#[tokio::test]
async fn repository_with_ten_thousand_files_is_checked_out_completely() {
    let repos = GitRepos::new();
    repos.create("big");
    repos.commit_many_files("big", "main", 10_000);
    let http = HttpGitServer::start(&repos.served_root(), "u", "p");
    let scratch = ScratchDir::new("big");
    let cache = new_cache(&scratch);
    let mut source = spec(&http.url("big"), "main");
    source.auth = Auth::Basic {
        username: "u".into(),
        password: "p".into(),
    };
    let artifact = cache.fetch(&source).await.expect("big fetch");
    let count: usize = std::fs::read_dir(&artifact.checkout)
        .expect("checkout")
        .flatten()
        .map(|dir| {
            std::fs::read_dir(dir.path())
                .map(|files| files.count())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(count, 10_000);
    assert_eq!(
        read(&artifact.checkout, "dir042/file09942.yaml"),
        "index: 9942\nname: file-9942\n"
    );
}

#[tokio::test]
async fn concurrent_fetches_of_one_url_fetch_once_and_share_the_checkout() {
    let repos = GitRepos::new();
    repos.create("mono");
    repos.commit(
        "mono",
        "main",
        &[("apps/a/x.yaml", "a"), ("apps/b/y.yaml", "b")],
        "mono",
        Signing::None,
    );
    let daemon = GitDaemon::start(&repos.served_root());
    let scratch = ScratchDir::new("concurrent");
    let cache = new_cache(&scratch);
    let source = spec(&daemon.url("mono"), "main");

    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (cache, source) = (cache.clone(), source.clone());
            tokio::spawn(async move { cache.fetch(&source).await })
        })
        .collect();
    let mut paths = Vec::new();
    for task in tasks {
        paths.push(task.await.expect("join").expect("fetch").checkout);
    }
    paths.dedup();
    assert_eq!(
        paths.len(),
        1,
        "all apps of a monorepo share one checkout per commit"
    );
    let stats = cache.stats();
    assert_eq!(stats.fetches, 1, "{stats:?}");
    assert_eq!(stats.checkouts_created, 1, "{stats:?}");
}

#[tokio::test]
async fn old_checkouts_are_garbage_collected_least_recently_used_first() {
    let repos = GitRepos::new();
    repos.create("app");
    let daemon = GitDaemon::start(&repos.served_root());
    let scratch = ScratchDir::new("gc");
    let mut options = CacheOptions::new(scratch.path().join("cache"));
    options.max_checkouts = 2;
    let cache = SourceCache::new(options);
    let source = spec(&daemon.url("app"), "main");

    let mut artifacts = Vec::new();
    for i in 0..3 {
        repos.commit("app", "main", &[("n", &i.to_string())], "c", Signing::None);
        artifacts.push(cache.fetch(&source).await.expect("fetch"));
    }
    assert!(
        !artifacts[0].checkout.exists(),
        "least recently used checkout is removed"
    );
    assert!(artifacts[1].checkout.exists() && artifacts[2].checkout.exists());
    assert_eq!(cache.stats().checkouts_removed, 1);
}

#[tokio::test]
async fn timeout_and_size_limit_are_enforced() {
    // A server that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let scratch = ScratchDir::new("limits");
    let mut options = CacheOptions::new(scratch.path().join("cache"));
    options.fetch_timeout = std::time::Duration::from_secs(1);
    let cache = SourceCache::new(options);
    let err = cache
        .fetch(&spec(&format!("git://127.0.0.1:{port}/app.git"), "main"))
        .await
        .expect_err("silent server");
    assert!(
        matches!(err, SourceError::Timeout { seconds: 1, .. }),
        "{err:?}"
    );
    // The timed-out work must not keep the mirror locked: a second try times out again in time
    // instead of waiting for the first one forever.
    let start = Instant::now();
    let err = cache
        .fetch(&spec(&format!("git://127.0.0.1:{port}/app.git"), "main"))
        .await
        .expect_err("still silent");
    assert!(matches!(err, SourceError::Timeout { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    drop(silent);

    let repos = GitRepos::new();
    repos.create("big");
    repos.commit_many_files("big", "main", 500);
    let daemon = GitDaemon::start(&repos.served_root());
    let mut options = CacheOptions::new(scratch.path().join("cache2"));
    options.max_repo_bytes = Some(1024);
    let cache = SourceCache::new(options);
    let err = cache
        .fetch(&spec(&daemon.url("big"), "main"))
        .await
        .expect_err("too large");
    assert!(
        matches!(
            err,
            SourceError::TooLarge {
                limit_bytes: 1024,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn file_urls_work() {
    // `capstan source fetch` output is tested with the binary (tests/cli_source.rs).
    let repos = GitRepos::new();
    repos.create("app");
    let sha = repos.commit("app", "main", &[("a.txt", "file")], "one", Signing::None);
    let scratch = ScratchDir::new("file-url");
    let artifact = new_cache(&scratch)
        .fetch(&spec(
            &format!("file://{}", repos.bare_path("app").display()),
            "main",
        ))
        .await
        .expect("file fetch");
    assert_eq!(artifact.commit, sha);
    assert_eq!(artifact.revision, format!("main@sha1:{sha}"));
    // The checkout is the tree, not a repository.
    assert!(!artifact.checkout.join(".git").exists());
}

#[tokio::test]
async fn ssh_key_with_passphrase_is_unlocked_and_a_wrong_or_missing_passphrase_is_named() {
    let repos = GitRepos::new();
    repos.create("app");
    let sha = repos.commit("app", "main", &[("a.txt", "locked")], "one", Signing::None);
    let sshd = SshGitServer::start();
    let scratch = ScratchDir::new("ssh-passphrase");
    let key = scratch.path().join("locked_key");
    ssh_keygen_with_passphrase(&key, "locked", "correct horse battery");
    sshd.authorize(&key.with_extension("pub"));
    let url = sshd.url(&repos.bare_path("app"));
    let with_passphrase = |passphrase: Option<&str>| {
        let mut source = spec(&url, "main");
        source.auth = Auth::Ssh {
            private_key: key.clone(),
            known_hosts: Some(sshd.known_hosts()),
            passphrase: passphrase.map(Secret::new),
        };
        source
    };
    let cache = new_cache(&scratch);

    let artifact = cache
        .fetch(&with_passphrase(Some("correct horse battery")))
        .await
        .expect("passphrase-protected key");
    assert_eq!(artifact.commit, sha);
    assert_eq!(read(&artifact.checkout, "a.txt"), "locked");

    let wrong = with_passphrase(Some("wrong-passphrase-value"));
    assert!(!format!("{wrong:?}").contains("wrong-passphrase-value"));
    let err = cache.fetch(&wrong).await.expect_err("wrong passphrase");
    match &err {
        SourceError::SshKeyPassphrase {
            key: named, reason, ..
        } => {
            assert_eq!(named, &key.display().to_string());
            assert!(reason.contains("passphrase is wrong"), "{err}");
        }
        other => panic!("expected SshKeyPassphrase, got {other:?}"),
    }
    assert!(
        !format!("{err} {err:?}").contains("wrong-passphrase-value"),
        "{err:?}"
    );

    let err = cache
        .fetch(&with_passphrase(None))
        .await
        .expect_err("missing passphrase");
    assert!(
        matches!(&err, SourceError::SshKeyPassphrase { reason, .. } if reason.contains("no passphrase")),
        "{err:?}"
    );

    // The CLI and app files read the passphrase from a file (one trailing newline ignored).
    let passphrase_file = scratch.path().join("passphrase");
    std::fs::write(&passphrase_file, "correct horse battery\n").expect("passphrase file");
    let passphrase =
        capstan_source::read_passphrase_file(&passphrase_file, &url).expect("passphrase file");
    let mut source = spec(&url, "main");
    source.auth = Auth::Ssh {
        private_key: key.clone(),
        known_hosts: Some(sshd.known_hosts()),
        passphrase: Some(passphrase),
    };
    let artifact = SourceCache::new(CacheOptions::new(scratch.path().join("file-cache")))
        .fetch(&source)
        .await
        .expect("fetch with passphrase file");
    assert_eq!(artifact.commit, sha);
    let err = capstan_source::read_passphrase_file(&scratch.path().join("missing"), &url)
        .expect_err("missing passphrase file");
    assert!(
        matches!(&err, SourceError::AuthFailed { detail, .. } if detail.contains("missing")),
        "{err:?}"
    );
}

#[tokio::test]
async fn size_limit_stops_the_transfer_midway_and_a_bigger_limit_fetches_later() {
    const MIB: u64 = 1024 * 1024;
    let repos = GitRepos::new();
    repos.create("random");
    let sha = repos.commit_random_blobs("random", "main", 4, MIB as usize);
    let daemon = GitDaemon::start(&repos.served_root());
    let scratch = ScratchDir::new("size-limit");
    let root = scratch.path().join("cache");
    let mut options = CacheOptions::new(&root);
    options.max_repo_bytes = Some(MIB);
    let cache = SourceCache::new(options);
    let source = spec(&daemon.url("random"), "main");

    let err = cache.fetch(&source).await.expect_err("too large");
    match &err {
        SourceError::TooLarge {
            limit_bytes,
            actual_bytes,
            ..
        } => {
            assert_eq!(*limit_bytes, MIB);
            // Stopped shortly after passing the limit, not after receiving all 4 MiB.
            assert!(
                *actual_bytes > MIB && *actual_bytes < 2 * MIB,
                "stopped at {actual_bytes} bytes"
            );
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert!(
        !cache.mirror_path(&source.url).expect("path").exists(),
        "the oversized mirror is removed"
    );
    assert_eq!(walk(&root.join("mirrors")), Vec::<String>::new());

    let mut options = CacheOptions::new(&root);
    options.max_repo_bytes = Some(64 * MIB);
    let artifact = SourceCache::new(options)
        .fetch(&source)
        .await
        .expect("fetch under a bigger limit");
    assert_eq!(artifact.commit, sha);
    let size = std::fs::metadata(artifact.checkout.join("random003.bin"))
        .expect("blob")
        .len();
    assert_eq!(size, MIB);
}

/// A TCP proxy that throttles server → client traffic to ~160 KiB/s on connections accepted while
/// `slow` is set; it counts the bytes forwarded that way and the connections the client closed.
struct SlowProxy {
    port: u16,
    slow: Arc<AtomicBool>,
    forwarded: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
    closed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowProxy {
    async fn start(target_port: u16) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let slow = Arc::new(AtomicBool::new(true));
        let [forwarded, accepted, closed] = [(); 3].map(|()| Arc::new(AtomicU64::new(0)));
        let (slow_flag, counter, accepted_count, closed_count) = (
            slow.clone(),
            forwarded.clone(),
            accepted.clone(),
            closed.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                else {
                    continue;
                };
                accepted_count.fetch_add(1, Ordering::SeqCst);
                let throttled = slow_flag.load(Ordering::SeqCst);
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                    let _ = server_write.shutdown().await;
                });
                let (counter, closed_count) = (counter.clone(), closed_count.clone());
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 8 * 1024];
                    loop {
                        let n = match server_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if client_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                        counter.fetch_add(n as u64, Ordering::SeqCst);
                        if throttled {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    let _ = client_write.shutdown().await;
                    closed_count.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        SlowProxy {
            port,
            slow,
            forwarded,
            accepted,
            closed,
            task,
        }
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn cancelling_a_slow_fetch_stops_it_promptly_and_the_next_fetch_works() {
    const MIB: usize = 1024 * 1024;
    let repos = GitRepos::new();
    repos.create("random");
    let sha = repos.commit_random_blobs("random", "main", 3, MIB);
    let daemon = GitDaemon::start(&repos.served_root());
    let proxy = SlowProxy::start(daemon.port).await;
    let scratch = ScratchDir::new("cancel");
    let cache = new_cache(&scratch);
    let source = spec(
        &format!("git://127.0.0.1:{}/random.git", proxy.port),
        "main",
    );

    // At ~160 KiB/s the 3 MiB pack takes ~20 s; give up after 1.5 s (the future is dropped).
    let abandoned = tokio::time::timeout(Duration::from_millis(1500), cache.fetch(&source)).await;
    assert!(abandoned.is_err(), "the slow fetch should still be running");
    let forwarded_at_cancel = proxy.forwarded.load(Ordering::SeqCst);
    assert!(
        forwarded_at_cancel > 64 * 1024 && forwarded_at_cancel < 2 * MIB as u64,
        "cancelled mid-transfer, after {forwarded_at_cancel} bytes"
    );

    // The abandoned transfer must stop, not trickle on in the background: its connection closes.
    let cancelled_at = Instant::now();
    while proxy.closed.load(Ordering::SeqCst) < proxy.accepted.load(Ordering::SeqCst) {
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(2),
            "the cancelled transfer is still running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // New connections at full speed: the next fetch works (no stale lock or half-written pack).
    proxy.slow.store(false, Ordering::SeqCst);
    let start = Instant::now();
    let artifact = cache.fetch(&source).await.expect("fetch after cancel");
    let elapsed = start.elapsed();
    assert_eq!(artifact.commit, sha);
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let packs: Vec<String> = walk(
        &cache
            .mirror_path(&source.url)
            .expect("mirror")
            .join("objects/pack"),
    )
    .into_iter()
    .filter(|p| !p.ends_with(".idx") && !p.ends_with(".rev"))
    .collect();
    assert_eq!(packs.len(), 1, "only the complete pack remains: {packs:?}");
}

fn ssh_fingerprint(public_key: &Path) -> String {
    let output = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(public_key)
        .output()
        .expect("ssh-keygen -l");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_owned()
}

fn allowed_signers(dir: &Path, key: &Path) -> std::path::PathBuf {
    let allowed = dir.join("allowed_signers");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("pub");
    std::fs::write(
        &allowed,
        format!("committer@example.com namespaces=\"git\" {public}"),
    )
    .expect("allowed");
    allowed
}

#[tokio::test]
async fn signed_annotated_tags_are_verified_with_ssh_and_openpgp_keys() {
    let repos = GitRepos::new();
    repos.create("app");
    let keys = ScratchDir::new("tag-keys");
    let (trusted, untrusted) = (keys.path().join("trusted"), keys.path().join("untrusted"));
    ssh_keygen(&trusted, "trusted");
    ssh_keygen(&untrusted, "untrusted");
    let allowed = allowed_signers(keys.path(), &trusted);
    let trusted_pgp = GpgKey::generate("Trusted <trusted@example.com>");
    let other_pgp = GpgKey::generate("Other <other@example.com>");
    let daemon = GitDaemon::start(&repos.served_root());
    let scratch = ScratchDir::new("verify-tags");
    let cache = new_cache(&scratch);
    let tag_spec = |tag: &str, verification: Verification| {
        let mut source = spec(&daemon.url("app"), &format!("tag:{tag}"));
        source.verification = Some(verification);
        source
    };
    let ssh_policy = Verification {
        ssh_allowed_signers: Some(allowed.clone()),
        openpgp_public_keys: Vec::new(),
    };
    let pgp_policy = Verification {
        ssh_allowed_signers: None,
        openpgp_public_keys: vec![trusted_pgp.public_key.clone()],
    };

    // The commits themselves are unsigned: for a tag reference the tag's signature is what counts.
    let commit = repos.commit("app", "main", &[("a", "1")], "release", Signing::None);
    repos.tag_signed("app", "main", "v1-ssh", "ssh", Signing::Ssh(&trusted));
    repos.tag_signed("app", "main", "v1-stranger", "x", Signing::Ssh(&untrusted));
    repos.tag("app", "main", "v1-unsigned", Some("not signed"));
    repos.tag_signed(
        "app",
        "main",
        "v1-pgp",
        "pgp",
        Signing::OpenPgp {
            gnupg_home: trusted_pgp.home.path(),
            fingerprint: &trusted_pgp.fingerprint,
        },
    );
    let other_tag = repos.tag_signed(
        "app",
        "main",
        "v1-pgp-other",
        "pgp other",
        Signing::OpenPgp {
            gnupg_home: other_pgp.home.path(),
            fingerprint: &other_pgp.fingerprint,
        },
    );

    let artifact = cache
        .fetch(&tag_spec("v1-ssh", ssh_policy.clone()))
        .await
        .expect("ssh-signed tag");
    assert_eq!(artifact.commit, commit);
    assert_eq!(artifact.revision, format!("v1-ssh@sha1:{commit}"));
    let artifact = cache
        .fetch(&tag_spec("v1-pgp", pgp_policy.clone()))
        .await
        .expect("pgp-signed tag");
    assert_eq!(artifact.commit, commit);

    let err = cache
        .fetch(&tag_spec("v1-stranger", ssh_policy.clone()))
        .await
        .expect_err("tag signed by an untrusted ssh key");
    match &err {
        SourceError::SignatureUntrusted { key_id, object, .. } => {
            assert_eq!(key_id, &ssh_fingerprint(&untrusted.with_extension("pub")));
            assert!(object.starts_with("tag object "), "{err}");
        }
        other => panic!("expected SignatureUntrusted, got {other:?}"),
    }
    let err = cache
        .fetch(&tag_spec("v1-pgp-other", pgp_policy.clone()))
        .await
        .expect_err("tag signed by an untrusted pgp key");
    match &err {
        SourceError::SignatureUntrusted { key_id, object, .. } => {
            assert!(other_pgp.fingerprint.ends_with(key_id.as_str()), "{err}");
            assert!(object.contains(&other_tag), "{err}");
        }
        other => panic!("expected SignatureUntrusted, got {other:?}"),
    }
    let err = cache
        .fetch(&tag_spec("v1-unsigned", ssh_policy))
        .await
        .expect_err("unsigned annotated tag");
    assert!(
        matches!(err, SourceError::SignatureMissing { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn tampered_or_corrupted_signatures_are_refused_as_invalid() {
    let repos = GitRepos::new();
    repos.create("app");
    let keys = ScratchDir::new("tamper-keys");
    let trusted = keys.path().join("trusted");
    ssh_keygen(&trusted, "trusted");
    let allowed = allowed_signers(keys.path(), &trusted);
    let pgp = GpgKey::generate("Trusted <trusted@example.com>");
    let daemon = GitDaemon::start(&repos.served_root());
    let scratch = ScratchDir::new("verify-tamper");
    let cache = new_cache(&scratch);
    let verified = |verification: Verification| {
        let mut source = spec(&daemon.url("app"), "main");
        source.verification = Some(verification);
        source
    };
    let ssh_policy = verified(Verification {
        ssh_allowed_signers: Some(allowed),
        openpgp_public_keys: Vec::new(),
    });
    let pgp_policy = verified(Verification {
        ssh_allowed_signers: None,
        openpgp_public_keys: vec![pgp.public_key.clone()],
    });
    let ssh_key_id = ssh_fingerprint(&trusted.with_extension("pub"));
    let expect_invalid = |err: SourceError, forged: &str, key: &dyn Fn(&str) -> bool| match &err {
        SourceError::SignatureInvalid { object, key_id, .. } => {
            assert!(object.contains(forged), "{err}");
            assert!(key(key_id), "{err}");
        }
        other => panic!("expected SignatureInvalid, got {other:?}"),
    };

    // SSH: a signed commit whose message was changed afterwards, and one with corrupted signature
    // bytes.
    repos.commit(
        "app",
        "main",
        &[("a", "1")],
        "signed",
        Signing::Ssh(&trusted),
    );
    cache
        .fetch(&ssh_policy)
        .await
        .expect("genuine ssh signature");
    let forged = repos.tamper_head("app", "main");
    let err = cache.fetch(&ssh_policy).await.expect_err("tampered commit");
    expect_invalid(err, &forged, &|key_id| key_id == ssh_key_id);
    repos.commit(
        "app",
        "main",
        &[("a", "2")],
        "signed",
        Signing::Ssh(&trusted),
    );
    let corrupted = repos.corrupt_head_signature("app", "main");
    let err = cache
        .fetch(&ssh_policy)
        .await
        .expect_err("corrupted signature");
    expect_invalid(err, &corrupted, &|key_id| key_id == ssh_key_id);

    // OpenPGP: the same two forgeries.
    let pgp_signing = || Signing::OpenPgp {
        gnupg_home: pgp.home.path(),
        fingerprint: &pgp.fingerprint,
    };
    repos.commit("app", "main", &[("a", "3")], "pgp", pgp_signing());
    cache
        .fetch(&pgp_policy)
        .await
        .expect("genuine pgp signature");
    let forged = repos.tamper_head("app", "main");
    let err = cache.fetch(&pgp_policy).await.expect_err("tampered commit");
    expect_invalid(err, &forged, &|key_id| pgp.fingerprint.ends_with(key_id));
    repos.commit("app", "main", &[("a", "4")], "pgp", pgp_signing());
    let corrupted = repos.corrupt_head_signature("app", "main");
    let err = cache
        .fetch(&pgp_policy)
        .await
        .expect_err("corrupted signature");
    expect_invalid(err, &corrupted, &|_| true);
}
