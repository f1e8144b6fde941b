//! `capstan source fetch` against git servers on loopback (no cluster needed): its text and JSON
//! output and its credential flags.

mod common;

use std::process::Output;

use capstan_test_support::git_servers::{
    GitRepos, ScratchDir, Signing, SshGitServer, ssh_keygen_with_passphrase,
};

use common::capstan;

fn source_fetch(args: &[&str]) -> Output {
    capstan()
        .args(["source", "fetch"])
        .args(args)
        .output()
        .expect("run capstan")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 stdout")
}

#[test]
fn fetch_of_a_file_url_prints_revision_checkout_and_digest_as_text_or_json() {
    let repos = GitRepos::new();
    repos.create("app");
    let sha = repos.commit("app", "main", &[("a.txt", "file")], "one", Signing::None);
    let scratch = ScratchDir::new("cli");
    let url = format!("file://{}", repos.bare_path("app").display());
    let cache = scratch.path().join("cache");
    let cache = cache.to_str().expect("utf-8 path");
    let fetch = |output: &str| {
        stdout(&source_fetch(&[
            &url,
            "--cache-dir",
            cache,
            "--timeout",
            "30",
            "-o",
            output,
        ]))
    };

    let json: serde_json::Value = serde_json::from_str(&fetch("json")).expect("json output");
    assert_eq!(json["commit"], sha);
    assert_eq!(json["revision"], format!("main@sha1:{sha}"));
    let checkout = json["checkout"].as_str().expect("checkout path");
    let digest = json["digest"].as_str().expect("digest");
    // The checkout is the tree, not a repository.
    assert!(std::path::Path::new(checkout).join("a.txt").exists());
    assert!(!std::path::Path::new(checkout).join(".git").exists());

    assert_eq!(
        fetch("text"),
        format!("revision: main@sha1:{sha}\ncheckout: {checkout}\ndigest:   {digest}\n")
    );
}

#[test]
fn ssh_key_passphrase_is_read_from_a_file() {
    let repos = GitRepos::new();
    repos.create("app");
    let sha = repos.commit("app", "main", &[("a.txt", "locked")], "one", Signing::None);
    let sshd = SshGitServer::start();
    let scratch = ScratchDir::new("cli-ssh-passphrase");
    let key = scratch.path().join("locked_key");
    ssh_keygen_with_passphrase(&key, "locked", "correct horse battery");
    sshd.authorize(&key.with_extension("pub"));
    // One trailing newline is ignored.
    let passphrase_file = scratch.path().join("passphrase");
    std::fs::write(&passphrase_file, "correct horse battery\n").expect("passphrase file");
    let known_hosts = sshd.known_hosts();
    let cache = scratch.path().join("cache");
    let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_owned();

    let output = source_fetch(&[
        &sshd.url(&repos.bare_path("app")),
        "--ssh-key",
        &path(&key),
        "--ssh-key-passphrase-file",
        &path(&passphrase_file),
        "--known-hosts",
        &path(&known_hosts),
        "--cache-dir",
        &path(&cache),
        "--timeout",
        "30",
        "-o",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("json output");
    assert_eq!(json["commit"], sha);
}

#[test]
fn verify_flag_of_an_unknown_kind_is_refused() {
    let output = source_fetch(&["file:///nowhere", "--verify", "x509=/keys/k"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("expected ssh=ALLOWED_SIGNERS_FILE or openpgp=PUBLIC_KEY_FILE"),
        "{stderr}"
    );
}
