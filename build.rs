//! Stamps the git commit into the binary for `capstan version`.
use std::process::Command;

fn main() {
    let commit = std::env::var("CAPSTAN_GIT_COMMIT").ok().or_else(|| {
        let out = Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    });
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .map(|out| out.status.success() && !out.stdout.is_empty())
        .unwrap_or(false);
    let commit = match commit {
        Some(c) if dirty => format!("{c}-dirty"),
        Some(c) => c,
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=CAPSTAN_GIT_COMMIT={commit}");
    println!("cargo:rerun-if-env-changed=CAPSTAN_GIT_COMMIT");
    // Rebuild when HEAD moves (checkout, or a commit on the current branch) or the dirty state changes.
    let mut watched = vec![".git/HEAD".to_string(), ".git/index".to_string()];
    if let Ok(head) = std::fs::read_to_string(".git/HEAD")
        && let Some(branch_ref) = head.trim().strip_prefix("ref: ")
    {
        watched.push(format!(".git/{branch_ref}"));
    }
    for path in watched {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
