//! Benchmark (not a test): the source stage against the `git` CLI on loopback, in one run.
//!
//! Run: `cargo bench -p capstan-source --bench source_vs_git`
//!
//! 1. "No new commit" check: `SourceCache::fetch` on a warm cache (one ref listing, no fetch, the
//!    existing checkout reused) vs `git ls-remote`.
//! 2. Cold shallow fetch of a 10,000-file repository including the checkout vs `git clone --depth 1`.
//! 3. Incremental fetch of one new commit (and its checkout) vs `git fetch` (no checkout) in a clone.
//!
//! Each is the median of several runs over `git daemon` (git://) on 127.0.0.1; Capstan and git
//! runs alternate, so load changes on a shared machine hit both sides alike.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use capstan_source::{Auth, CacheOptions, Reference, SourceCache, SourceSpec};
use capstan_test_support::git_servers::{GitDaemon, GitRepos, ScratchDir, Signing};

const RUNS: usize = 7;

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run git");
    assert!(status.success(), "git {args:?} failed");
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn report(name: &str, ours: Duration, theirs: Duration, git_command: &str) {
    println!(
        "{name:<44} capstan {:>9.2} ms   {git_command:<24} {:>9.2} ms   ratio {:.2}",
        ours.as_secs_f64() * 1000.0,
        theirs.as_secs_f64() * 1000.0,
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
}

fn spec(url: &str) -> SourceSpec {
    SourceSpec {
        url: url.to_owned(),
        reference: Reference::Branch("main".into()),
        auth: Auth::None,
        verification: None,
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let repos = GitRepos::new();
    repos.create("big");
    repos.commit_many_files("big", "main", 10_000);
    repos.create("small");
    repos.commit(
        "small",
        "main",
        &[("a.yaml", "n: 0\n")],
        "c0",
        Signing::None,
    );
    let daemon = GitDaemon::start(&repos.served_root());
    let scratch = ScratchDir::new("bench");
    let big_url = daemon.url("big");
    let small_url = daemon.url("small");

    // 1. "no new commit" check
    let cache = SourceCache::new(CacheOptions::new(scratch.path().join("warm")));
    runtime
        .block_on(cache.fetch(&spec(&big_url)))
        .expect("warm up");
    // Capstan and git alternate, so load changes on the (shared) machine hit both sides alike.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let start = Instant::now();
        runtime
            .block_on(cache.fetch(&spec(&big_url)))
            .expect("check");
        ours.push(start.elapsed());
        let start = Instant::now();
        git(scratch.path(), &["ls-remote", &big_url]);
        theirs.push(start.elapsed());
    }
    assert_eq!(cache.stats().fetches, 1, "the warm checks must not fetch");
    let (ours, theirs) = (median(ours), median(theirs));
    report(
        "no-new-commit check (10k-file repo)",
        ours,
        theirs,
        "git ls-remote",
    );

    // 2. cold shallow fetch + checkout of 10,000 files
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..RUNS {
        let cache = SourceCache::new(CacheOptions::new(scratch.path().join(format!("cold-{i}"))));
        let start = Instant::now();
        runtime
            .block_on(cache.fetch(&spec(&big_url)))
            .expect("cold fetch");
        ours.push(start.elapsed());
        let target = scratch.path().join(format!("clone-{i}"));
        let start = Instant::now();
        git(
            scratch.path(),
            &[
                "clone",
                "-q",
                "--depth",
                "1",
                &big_url,
                &target.display().to_string(),
            ],
        );
        theirs.push(start.elapsed());
    }
    let (ours, theirs) = (median(ours), median(theirs));
    report(
        "cold shallow fetch + checkout (10k files)",
        ours,
        theirs,
        "git clone --depth 1",
    );

    // 3. incremental fetch of one new commit
    let cache = SourceCache::new(CacheOptions::new(scratch.path().join("incremental")));
    runtime
        .block_on(cache.fetch(&spec(&small_url)))
        .expect("initial");
    let clone = scratch.path().join("incremental-clone");
    git(
        scratch.path(),
        &["clone", "-q", &small_url, &clone.display().to_string()],
    );
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for i in 1..=RUNS {
        repos.commit(
            "small",
            "main",
            &[("a.yaml", &format!("n: {i}\n"))],
            "next",
            Signing::None,
        );
        let start = Instant::now();
        let artifact = runtime
            .block_on(cache.fetch(&spec(&small_url)))
            .expect("incremental");
        ours.push(start.elapsed());
        assert!(
            std::fs::read_to_string(artifact.checkout.join("a.yaml"))
                .expect("file")
                .contains(&i.to_string())
        );
        let start = Instant::now();
        git(&clone, &["fetch", "-q", "origin"]);
        theirs.push(start.elapsed());
    }
    report(
        "incremental fetch of one new commit",
        median(ours),
        median(theirs),
        "git fetch",
    );
}
