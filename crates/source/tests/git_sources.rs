//! The source stage against real git servers on loopback (git daemon, nginx + git http-backend with
//! basic auth, sshd + git-shell). Every test owns its repositories, servers, ports and cache.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use capstan_source::{
    Auth, CacheOptions, Reference, SourceCache, SourceError, SourceSpec, Verification,
};
use capstan_test_support::git_servers::{
    BEARER_TOKEN, GitDaemon, GitRepos, GpgKey, HttpGitServer, ScratchDir, Signing, SshGitServer,
    ssh_keygen,
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
async fn file_urls_and_the_cli_command_work() {
    let repos = GitRepos::new();
    repos.create("app");
    let sha = repos.commit("app", "main", &[("a.txt", "file")], "one", Signing::None);
    let scratch = ScratchDir::new("cli");
    let artifact = capstan_source::cli::fetch_command(capstan_source::cli::FetchArgs {
        url: format!("file://{}", repos.bare_path("app").display()),
        reference: "main".into(),
        cache_dir: scratch.path().join("cache"),
        timeout_seconds: 30,
        ..Default::default()
    })
    .await
    .expect("cli fetch");
    assert_eq!(artifact.commit, sha);
    let json: serde_json::Value =
        serde_json::from_str(&capstan_source::cli::format_json(&artifact)).expect("json output");
    assert_eq!(json["revision"], format!("main@sha1:{sha}"));
    assert!(
        capstan_source::cli::format_text(&artifact)
            .contains(&artifact.checkout.display().to_string())
    );
    // The checkout is the tree, not a repository.
    assert!(!artifact.checkout.join(".git").exists());
}
