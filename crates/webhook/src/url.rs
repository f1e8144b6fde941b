//! Matching a payload's repository URLs against the URLs sources are configured with.
//!
//! A host names one repository in several ways (`https://host/org/app.git`,
//! `git@host:org/app.git`, `ssh://git@host/org/app`, `git://host/org/app.git`, the web page
//! `https://host/org/app`), and a `GitRepository` uses one of them. Parsing is `capstan-core`'s
//! ([`RemoteUrl`], shared with the source stage: credentials split off, scp-like URLs, host case,
//! trailing `/` and `.git`); this module compares what it yields by host, non-default port and
//! path, ignoring the scheme.

use capstan_core::git_url::RemoteUrl;

/// Whether `a` and `b` name the same repository: same host (any case), same port once defaults
/// are dropped (443, 80, 22, 9418), same path without a trailing `/` or `.git`; scheme, user and
/// password do not matter.
///
/// Paths compare case-insensitively: GitHub, GitLab, Gitea and Bitbucket resolve `Org/App` and
/// `org/app` to one repository and payloads use the canonical spelling while users may not. A
/// false match only costs an extra fetch that finds nothing new; a missed one loses the push.
/// URLs that do not parse (or `file://` ones against network ones) never match.
pub fn same_repository(a: &str, b: &str) -> bool {
    match (repository_key(a), repository_key(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `host[:port]/path`, lower case, or `file://path` for local repositories.
fn repository_key(url: &str) -> Option<String> {
    let remote = RemoteUrl::parse(url).ok()?;
    let (scheme, rest) = remote.cache_key.split_once("://")?;
    if scheme == "file" {
        return Some(remote.cache_key.to_lowercase());
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let default_port = match scheme {
        "https" => "443",
        "http" => "80",
        "ssh" => "22",
        "git" => "9418",
        _ => "",
    };
    // Only a default port is dropped: what follows the last `:` of `[::1]` is `1]`, never one.
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port == default_port && !host.is_empty() => host,
        _ => authority,
    };
    let path = path.trim_end_matches('/');
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some(format!("{host}{}", path.to_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_repository_in_every_spelling() {
        let spellings = [
            "https://github.com/Octo-Org/app.git",
            "https://github.com/octo-org/app",
            "https://github.com/octo-org/app/",
            "http://github.com/octo-org/app.git",
            "https://GitHub.com:443/octo-org/app.git",
            "https://user:token@github.com/octo-org/app.git",
            "git@github.com:Octo-Org/app.git",
            "git@github.com:/octo-org/app.git",
            "ssh://git@github.com/octo-org/app.git",
            "ssh://git@github.com:22/octo-org/app",
            "git://github.com/octo-org/app.git",
            "  https://github.com/octo-org/app.git  ",
        ];
        for a in spellings {
            for b in spellings {
                assert!(same_repository(a, b), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn different_repositories_hosts_and_ports_do_not_match() {
        let base = "https://github.com/octo-org/app.git";
        for other in [
            "https://github.com/octo-org/app2.git",
            "https://github.com/octo-org/ap.git",
            "https://github.com/other/app.git",
            "https://gitlab.com/octo-org/app.git",
            "https://github.com/octo-org/app/sub",
            "https://github.com/octo-org",
            "https://github.com:8443/octo-org/app.git",
            "git@gitlab.com:octo-org/app.git",
            "file:///octo-org/app.git",
            "",
            "nonsense",
            "https://github.com",
        ] {
            assert!(!same_repository(base, other), "{base} vs {other:?}");
            assert!(!same_repository(other, base), "{other:?} vs {base}");
        }
    }

    #[test]
    fn loopback_servers_are_told_apart_by_port() {
        // Test git servers (and self-hosted ones) differ only by port.
        assert!(same_repository(
            "http://127.0.0.1:40177/repo.git",
            "http://127.0.0.1:40177/repo"
        ));
        assert!(!same_repository(
            "http://127.0.0.1:40177/repo.git",
            "http://127.0.0.1:40178/repo.git"
        ));
        assert!(same_repository(
            "ssh://git@[::1]:2222/repo.git",
            "ssh://[::1]:2222/repo"
        ));
        assert!(!same_repository(
            "ssh://git@[::1]:2222/repo.git",
            "ssh://[::1]/repo"
        ));
        // Bitbucket Server: ssh on 7999 and https under /scm are different spellings; the payload
        // lists both, so each configured URL matches one of them.
        assert!(same_repository(
            "ssh://git@bitbucket.example.com:7999/proj/repository.git",
            "ssh://git@bitbucket.example.com:7999/PROJ/repository"
        ));
    }

    #[test]
    fn local_paths_match_local_paths() {
        assert!(same_repository("file:///srv/git/app.git", "/srv/git/app"));
        assert!(!same_repository(
            "file:///srv/git/app.git",
            "/srv/git/other"
        ));
    }
}
