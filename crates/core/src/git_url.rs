//! Git remote URLs, shared by the source stage (fetching, cache keys) and the webhook receiver
//! (matching a push to a source): credentials are split off the URL before anything else sees it, so
//! the form used for fetching, for messages and for keys never contains a password.

/// A URL that [`RemoteUrl::parse`] refused; `url` has its password masked.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid source URL {url:?}: {reason}")]
pub struct InvalidUrl {
    pub url: String,
    pub reason: String,
}

/// A remote URL with its credentials separated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteUrl {
    /// The URL to fetch from: no password; the user part is kept only for SSH, where it is the login.
    pub fetch_url: String,
    /// Scheme, lower-case host, port and path without trailing `/` or `.git`: one mirror per key.
    pub cache_key: String,
    /// `user:password` that was embedded in an http(s) URL, if any.
    pub embedded_basic: Option<(String, String)>,
    pub is_ssh: bool,
    pub is_http: bool,
}

impl RemoteUrl {
    pub fn parse(raw: &str) -> Result<Self, InvalidUrl> {
        let invalid = |reason: &str| InvalidUrl {
            url: redact_userinfo(raw),
            reason: reason.to_owned(),
        };
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(invalid("it is empty"));
        }
        if let Some(transport) = remote_helper(raw) {
            return Err(invalid(&format!(
                "\"{transport}::\" is git's <transport>::<address> syntax, which runs the remote \
                 helper git-remote-{transport}; Capstan runs no remote helpers: use https://, \
                 http://, ssh://, git://, file:// or user@host:path"
            )));
        }
        let (scheme, rest) = if let Some((scheme, rest)) = raw.split_once("://") {
            (scheme.to_ascii_lowercase(), rest.to_owned())
        } else if raw.starts_with('/') {
            ("file".to_owned(), raw.to_owned())
        } else if let Some((authority, path)) = raw.split_once(':') {
            // scp-like `user@host:path`
            (
                "ssh".to_owned(),
                format!("{authority}/{}", path.trim_start_matches('/')),
            )
        } else {
            return Err(invalid(
                "expected https://, http://, ssh://, git://, file:// or user@host:path",
            ));
        };
        if !matches!(scheme.as_str(), "https" | "http" | "ssh" | "git" | "file") {
            return Err(invalid(&format!("unsupported scheme {scheme:?}")));
        }
        if scheme == "file" {
            let path = rest.trim_end_matches('/');
            if path.is_empty() {
                return Err(invalid("no path"));
            }
            return Ok(RemoteUrl {
                fetch_url: format!("file://{path}"),
                cache_key: format!("file://{}", path.trim_end_matches(".git")),
                embedded_basic: None,
                is_ssh: false,
                is_http: false,
            });
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest.as_str(), "/"),
        };
        let (userinfo, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host)) => (Some(userinfo), host),
            None => (None, authority),
        };
        if host_port.is_empty() {
            return Err(invalid("no host"));
        }
        let (user, password) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (Some(user.to_owned()), Some(password.to_owned())),
                None => (Some(info.to_owned()), None),
            },
            None => (None, None),
        };
        let host_port = host_port.to_ascii_lowercase();
        let is_ssh = scheme == "ssh";
        let is_http = scheme == "http" || scheme == "https";
        let fetch_url = match (&user, is_ssh) {
            (Some(user), true) => format!("{scheme}://{user}@{host_port}{path}"),
            _ => format!("{scheme}://{host_port}{path}"),
        };
        let key_path = path.trim_end_matches('/').trim_end_matches(".git");
        Ok(RemoteUrl {
            fetch_url,
            cache_key: format!("{scheme}://{host_port}{key_path}"),
            embedded_basic: match (is_http, user, password) {
                (true, Some(user), Some(password)) => Some((user, password)),
                _ => None,
            },
            is_ssh,
            is_http,
        })
    }

    /// `host[:port]` for messages about host keys.
    pub fn host(&self) -> String {
        let rest = self
            .fetch_url
            .split_once("://")
            .map_or("", |(_, rest)| rest);
        let authority = rest.split('/').next().unwrap_or_default();
        authority.rsplit('@').next().unwrap_or_default().to_owned()
    }
}

/// The transport of git's remote-helper syntax `<transport>::<address>` (`fd::17`, `ext::…`), as git
/// recognises it: a leading `[A-Za-z0-9][A-Za-z0-9+.-]*` followed by `::`.
fn remote_helper(raw: &str) -> Option<&str> {
    let end = raw
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphanumeric() || (i > 0 && matches!(c, '+' | '-' | '.'))))
        .map_or(raw.len(), |(i, _)| i);
    (end > 0 && raw[end..].starts_with("::")).then(|| &raw[..end])
}

/// Replaces `user:password@` in anything URL-like with `user:***@`, for messages about unparsable input.
pub fn redact_userinfo(raw: &str) -> String {
    match raw.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split(':').next().unwrap_or_default();
                    let masked = if userinfo.contains(':') {
                        format!("{user}:***")
                    } else {
                        user.to_owned()
                    };
                    format!("{scheme}://{masked}@{host}{}", &rest[authority_end..])
                }
                None => raw.to_owned(),
            }
        }
        None => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_fetch_url_or_cache_key() {
        let url =
            RemoteUrl::parse("https://alice:s3cret@Git.Example.com/org/repo.git/").expect("valid");
        assert_eq!(url.fetch_url, "https://git.example.com/org/repo.git/");
        assert_eq!(url.cache_key, "https://git.example.com/org/repo");
        assert_eq!(url.embedded_basic, Some(("alice".into(), "s3cret".into())));
    }

    #[test]
    fn scp_like_urls_become_ssh() {
        let url = RemoteUrl::parse("git@host.example:org/repo.git").expect("valid");
        assert!(url.is_ssh);
        assert_eq!(url.fetch_url, "ssh://git@host.example/org/repo.git");
        assert_eq!(url.host(), "host.example");
    }

    /// What each URL is read as: its transport and fetch URL, or the refusal's reason.
    #[test]
    fn transports_are_read_or_refused_by_the_table() {
        let table: &[(&str, Result<&str, &str>)] = &[
            ("https://host/org/repo.git", Ok("https://host/org/repo.git")),
            ("git://host:9418/repo", Ok("git://host:9418/repo")),
            ("ssh://git@host:2222/repo", Ok("ssh://git@host:2222/repo")),
            ("git@host:org/repo.git", Ok("ssh://git@host/org/repo.git")),
            ("host:repo", Ok("ssh://host/repo")),
            ("/srv/git/repo.git", Ok("file:///srv/git/repo.git")),
            ("file:///srv/git/repo.git", Ok("file:///srv/git/repo.git")),
            // git's `<transport>::<address>`: a remote helper, never an ssh host.
            ("fd::17", Err("remote helper")),
            (
                "ext::ssh -o ProxyCommand=x host %S repo",
                Err("remote helper"),
            ),
            ("git::https://host/repo", Err("remote helper")),
            ("persistent-https::host/repo", Err("remote helper")),
            ("Fd::17", Err("remote helper")),
            ("ftp://host/repo", Err("unsupported scheme")),
            ("nonsense", Err("expected https://")),
            ("", Err("empty")),
        ];
        for (raw, expected) in table {
            match (RemoteUrl::parse(raw), expected) {
                (Ok(url), Ok(fetch_url)) => assert_eq!(url.fetch_url, *fetch_url, "{raw}"),
                (Err(err), Err(reason)) => {
                    assert!(err.reason.contains(reason), "{raw}: {err}");
                    assert_eq!(err.url, *raw, "the error names the URL");
                }
                (got, _) => panic!("{raw:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn unsupported_or_empty_urls_are_errors_without_secrets() {
        let err = RemoteUrl::parse("ftp://u:pw@host/x").expect_err("ftp unsupported");
        assert!(!err.to_string().contains("pw@"), "{err}");
        assert!(RemoteUrl::parse("").is_err());
        assert!(RemoteUrl::parse("nonsense").is_err());
    }
}
