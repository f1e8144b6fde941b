//! Which requests are pushes, and what a push payload says.
//!
//! Events (a signed request of any other event gets 200 with nothing triggered, so that hosts
//! which send pings or everything to one URL see success):
//!
//! | provider | header | push events |
//! | --- | --- | --- |
//! | GitHub | `X-GitHub-Event` | `push` (`ping` and the rest are ignored) |
//! | GitLab | `X-Gitlab-Event` | `Push Hook`, `Tag Push Hook` |
//! | Gitea/Forgejo | `X-Gitea-Event` (or `X-Forgejo-Event`) | `push` |
//! | Bitbucket | `X-Event-Key` | `repo:push` (Cloud), `repo:refs_changed` (Server/Data Center) |
//! | generic | none | every request |
//!
//! Payload fields read (everything else is ignored):
//!
//! | format | repository URLs | ref | commit |
//! | --- | --- | --- | --- |
//! | GitHub, Gitea | `repository.{clone_url, ssh_url, git_url, html_url}` | `ref` | `after` |
//! | GitLab | `project.{git_http_url, git_ssh_url, http_url, ssh_url, web_url}`, `repository.{git_http_url, git_ssh_url, url, homepage}` | `ref` | `after` |
//! | Bitbucket Cloud | `repository.links.html.href` | `push.changes[].new.{type, name}` → `refs/heads/…`/`refs/tags/…` | `push.changes[].new.target.hash` |
//! | Bitbucket Server | `repository.links.clone[].href` | `changes[].refId` | `changes[].toHash` |
//! | generic | `repository` (a string) | `ref` (optional) | `after` (optional) |
//!
//! GitHub and Gitea may be configured to send `application/x-www-form-urlencoded`; the JSON is then
//! the `payload` field (the signature still covers the raw body). A push must name at least one
//! repository URL; a payload that is not JSON, has a field of the wrong type or names no
//! repository is refused with a message naming the field.

use std::borrow::Cow;

use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{Provider, PushEvent};

/// The payload shapes this module reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// GitHub and Gitea share a payload shape.
    Hub(Provider),
    GitLab,
    BitbucketCloud,
    BitbucketServer,
    Generic,
}

/// What a (verified) request is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Push(Format),
    /// Not a push: the event's name, as the header gave it.
    Ignored(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("missing {header} header (the {provider} event type)")]
    MissingEventHeader {
        provider: &'static str,
        header: &'static str,
    },
    #[error("{format} body is form-encoded but has no `payload` field")]
    NoFormPayload { format: &'static str },
    #[error("{format} payload is not valid JSON: {message}")]
    Syntax {
        format: &'static str,
        message: String,
    },
    #[error("{format} payload: field `{field}`: {message}")]
    Field {
        format: &'static str,
        field: String,
        message: String,
    },
    #[error("{format} payload names no repository URL (expected {expected})")]
    NoRepository {
        format: &'static str,
        expected: &'static str,
    },
}

/// Sorts a request by its event header.
pub fn classify(provider: Provider, headers: &HeaderMap) -> Result<Event, PayloadError> {
    let header = |names: &[&'static str]| -> Result<String, PayloadError> {
        names
            .iter()
            .find_map(|name| headers.get(*name))
            .map(|value| String::from_utf8_lossy(value.as_bytes()).trim().to_owned())
            .ok_or(PayloadError::MissingEventHeader {
                provider: provider.display_name(),
                header: names[0],
            })
    };
    let event = match provider {
        Provider::Generic => return Ok(Event::Push(Format::Generic)),
        Provider::GitHub => header(&["X-GitHub-Event"])?,
        Provider::Gitea => header(&["X-Gitea-Event", "X-Forgejo-Event", "X-Gogs-Event"])?,
        Provider::GitLab => header(&["X-Gitlab-Event"])?,
        Provider::Bitbucket => header(&["X-Event-Key"])?,
    };
    let format = match (provider, event.as_str()) {
        (Provider::GitHub | Provider::Gitea, "push") => Format::Hub(provider),
        (Provider::GitLab, "Push Hook" | "Tag Push Hook") => Format::GitLab,
        (Provider::Bitbucket, "repo:push") => Format::BitbucketCloud,
        (Provider::Bitbucket, "repo:refs_changed") => Format::BitbucketServer,
        _ => return Ok(Event::Ignored(event)),
    };
    Ok(Event::Push(format))
}

impl Format {
    pub fn provider(self) -> Provider {
        match self {
            Format::Hub(provider) => provider,
            Format::GitLab => Provider::GitLab,
            Format::BitbucketCloud | Format::BitbucketServer => Provider::Bitbucket,
            Format::Generic => Provider::Generic,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Hub(Provider::Gitea) => "Gitea push",
            Format::Hub(_) => "GitHub push",
            Format::GitLab => "GitLab push",
            Format::BitbucketCloud => "Bitbucket Cloud repo:push",
            Format::BitbucketServer => "Bitbucket Server repo:refs_changed",
            Format::Generic => "generic push",
        }
    }
}

/// Parses the body of a push (already verified) into a [`PushEvent`].
pub fn parse_push(
    format: Format,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<PushEvent, PayloadError> {
    let json = json_body(format, headers, body)?;
    let mut push = match format {
        Format::Hub(_) => from_hub(decode(format, &json)?),
        Format::GitLab => from_gitlab(decode(format, &json)?),
        Format::BitbucketCloud => from_bitbucket_cloud(decode(format, &json)?),
        Format::BitbucketServer => from_bitbucket_server(decode(format, &json)?),
        Format::Generic => from_generic(decode(format, &json)?),
    };
    push.provider = format.provider();
    if push.repository_urls.is_empty() {
        return Err(PayloadError::NoRepository {
            format: format.name(),
            expected: match format {
                Format::Hub(_) => "repository.clone_url, ssh_url, git_url or html_url",
                Format::GitLab => "project.git_http_url, git_ssh_url or web_url",
                Format::BitbucketCloud => "repository.links.html.href",
                Format::BitbucketServer => "repository.links.clone[].href",
                Format::Generic => "repository: \"<url>\"",
            },
        });
    }
    Ok(push)
}

fn json_body<'a>(
    format: Format,
    headers: &HeaderMap,
    body: &'a [u8],
) -> Result<Cow<'a, [u8]>, PayloadError> {
    let form = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form {
        return Ok(Cow::Borrowed(body));
    }
    form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| Cow::Owned(value.into_owned().into_bytes()))
        .ok_or(PayloadError::NoFormPayload {
            format: format.name(),
        })
}

fn decode<T: DeserializeOwned>(format: Format, json: &[u8]) -> Result<T, PayloadError> {
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_data() && field != "." {
            PayloadError::Field {
                format: format.name(),
                field,
                message: inner.to_string(),
            }
        } else {
            PayloadError::Syntax {
                format: format.name(),
                message: inner.to_string(),
            }
        }
    })?;
    deserializer.end().map_err(|err| PayloadError::Syntax {
        format: format.name(),
        message: err.to_string(),
    })?;
    Ok(value)
}

/// Collects URLs: present, non-empty, each once, passwords masked.
#[derive(Default)]
struct Urls(Vec<String>);

impl Urls {
    fn add(&mut self, url: Option<String>) {
        let Some(url) = url else { return };
        let url = url.trim();
        if url.is_empty() {
            return;
        }
        let url = capstan_core::git_url::redact_userinfo(url);
        if !self.0.contains(&url) {
            self.0.push(url);
        }
    }
}

/// A commit id, unless absent, empty, or all zeros (git's "no commit": the ref was deleted).
fn commit(id: Option<String>) -> Option<String> {
    id.filter(|id| !id.is_empty() && !id.bytes().all(|b| b == b'0'))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|value| !value.is_empty())
}

/// One ref and commit for a push of several changes: only when they all agree.
fn single<T: PartialEq>(mut values: impl Iterator<Item = T>) -> Option<T> {
    let first = values.next()?;
    values.all(|other| other == first).then_some(first)
}

fn event(urls: Urls, git_ref: Option<String>, after: Option<String>) -> PushEvent {
    PushEvent {
        provider: Provider::Generic, // set by `parse_push`
        repository_urls: urls.0,
        git_ref: non_empty(git_ref),
        after: commit(after),
    }
}

// GitHub and Gitea: https://docs.github.com/webhooks/webhook-events-and-payloads#push

#[derive(Deserialize)]
struct HubPush {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    after: Option<String>,
    repository: Option<HubRepository>,
}

#[derive(Deserialize)]
struct HubRepository {
    clone_url: Option<String>,
    ssh_url: Option<String>,
    git_url: Option<String>,
    html_url: Option<String>,
}

fn from_hub(push: HubPush) -> PushEvent {
    let mut urls = Urls::default();
    if let Some(repo) = push.repository {
        urls.add(repo.clone_url);
        urls.add(repo.ssh_url);
        urls.add(repo.git_url);
        urls.add(repo.html_url);
    }
    event(urls, push.git_ref, push.after)
}

// GitLab: "Push events" and "Tag events" in GitLab's webhook events documentation.

#[derive(Deserialize)]
struct GitLabPush {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    after: Option<String>,
    project: Option<GitLabProject>,
    repository: Option<GitLabRepository>,
}

#[derive(Deserialize)]
struct GitLabProject {
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
    http_url: Option<String>,
    ssh_url: Option<String>,
    web_url: Option<String>,
}

#[derive(Deserialize)]
struct GitLabRepository {
    git_http_url: Option<String>,
    git_ssh_url: Option<String>,
    url: Option<String>,
    homepage: Option<String>,
}

fn from_gitlab(push: GitLabPush) -> PushEvent {
    let mut urls = Urls::default();
    if let Some(project) = push.project {
        urls.add(project.git_http_url);
        urls.add(project.git_ssh_url);
        urls.add(project.http_url);
        urls.add(project.ssh_url);
        urls.add(project.web_url);
    }
    if let Some(repo) = push.repository {
        urls.add(repo.git_http_url);
        urls.add(repo.git_ssh_url);
        urls.add(repo.url);
        urls.add(repo.homepage);
    }
    event(urls, push.git_ref, push.after)
}

// Bitbucket Cloud: "Event payloads", Repository events → Push.

#[derive(Deserialize)]
struct CloudPush {
    repository: Option<CloudRepository>,
    push: Option<CloudChanges>,
}

#[derive(Deserialize)]
struct CloudRepository {
    links: Option<CloudLinks>,
}

#[derive(Deserialize)]
struct CloudLinks {
    html: Option<Href>,
}

#[derive(Deserialize)]
struct Href {
    href: Option<String>,
}

#[derive(Deserialize)]
struct CloudChanges {
    #[serde(default)]
    changes: Vec<CloudChange>,
}

#[derive(Deserialize)]
struct CloudChange {
    new: Option<CloudRef>,
    old: Option<CloudRef>,
}

#[derive(Deserialize)]
struct CloudRef {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    target: Option<CloudTarget>,
}

#[derive(Deserialize)]
struct CloudTarget {
    hash: Option<String>,
}

fn from_bitbucket_cloud(push: CloudPush) -> PushEvent {
    let mut urls = Urls::default();
    urls.add(
        push.repository
            .and_then(|repo| repo.links)
            .and_then(|links| links.html)
            .and_then(|html| html.href),
    );
    let changes = push.push.map(|push| push.changes).unwrap_or_default();
    // A deleted ref has `new: null`; its name is in `old`, and there is no commit.
    let moved: Vec<(Option<String>, Option<String>)> = changes
        .into_iter()
        .map(|change| {
            let (reference, deleted) = match (change.new, change.old) {
                (Some(new), _) => (Some(new), false),
                (None, old) => (old, true),
            };
            let Some(reference) = reference else {
                return (None, None);
            };
            let git_ref = match (reference.kind.as_deref(), reference.name) {
                (Some("branch"), Some(name)) => Some(format!("refs/heads/{name}")),
                (Some("tag"), Some(name)) => Some(format!("refs/tags/{name}")),
                _ => None,
            };
            let after = if deleted {
                None
            } else {
                reference.target.and_then(|target| target.hash)
            };
            (git_ref, after)
        })
        .collect();
    let (git_ref, after) = single(moved.into_iter()).unwrap_or((None, None));
    event(urls, git_ref, after)
}

// Bitbucket Server / Data Center: "Event payload", Repository events → Push (repo:refs_changed).

#[derive(Deserialize)]
struct ServerPush {
    repository: Option<ServerRepository>,
    #[serde(default)]
    changes: Vec<ServerChange>,
}

#[derive(Deserialize)]
struct ServerRepository {
    links: Option<ServerLinks>,
}

#[derive(Deserialize)]
struct ServerLinks {
    #[serde(default)]
    clone: Vec<Href>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerChange {
    ref_id: Option<String>,
    to_hash: Option<String>,
}

fn from_bitbucket_server(push: ServerPush) -> PushEvent {
    let mut urls = Urls::default();
    for clone in push
        .repository
        .and_then(|repo| repo.links)
        .map(|links| links.clone)
        .unwrap_or_default()
    {
        urls.add(clone.href);
    }
    let moved = push
        .changes
        .into_iter()
        .map(|change| (change.ref_id, commit(change.to_hash)));
    let (git_ref, after) = single(moved).unwrap_or((None, None));
    event(urls, git_ref, after)
}

// Generic: Capstan's own minimal shape, for scripts and hosts without a dedicated provider.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericPush {
    repository: Option<String>,
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    after: Option<String>,
}

fn from_generic(push: GenericPush) -> PushEvent {
    let mut urls = Urls::default();
    urls.add(push.repository);
    event(urls, push.git_ref, push.after)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    fn parse(format: Format, body: &str) -> Result<PushEvent, PayloadError> {
        parse_push(format, &HeaderMap::new(), body.as_bytes())
    }

    /// Trimmed from GitHub's documented push payload (and a real delivery's shape).
    const GITHUB_PUSH: &str = r#"{
      "ref": "refs/heads/main",
      "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
      "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
      "created": false, "deleted": false, "forced": false,
      "repository": {
        "id": 186853002, "name": "app", "full_name": "Octo-Org/app", "private": false,
        "html_url": "https://github.com/Octo-Org/app",
        "url": "https://github.com/Octo-Org/app",
        "git_url": "git://github.com/Octo-Org/app.git",
        "ssh_url": "git@github.com:Octo-Org/app.git",
        "clone_url": "https://github.com/Octo-Org/app.git",
        "svn_url": "https://github.com/Octo-Org/app",
        "default_branch": "main",
        "owner": {"name": "Octo-Org", "login": "Octo-Org"}
      },
      "pusher": {"name": "octocat", "email": "octocat@github.com"},
      "head_commit": {"id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", "message": "Update README.md"},
      "commits": []
    }"#;

    #[test]
    fn github_push() {
        let push = parse(Format::Hub(Provider::GitHub), GITHUB_PUSH).expect("parses");
        assert_eq!(
            push,
            PushEvent {
                provider: Provider::GitHub,
                repository_urls: vec![
                    "https://github.com/Octo-Org/app.git".into(),
                    "git@github.com:Octo-Org/app.git".into(),
                    "git://github.com/Octo-Org/app.git".into(),
                    "https://github.com/Octo-Org/app".into(),
                ],
                git_ref: Some("refs/heads/main".into()),
                after: Some("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c".into()),
            }
        );
    }

    #[test]
    fn github_form_encoded_push_reads_the_payload_field() {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", GITHUB_PUSH)
            .finish();
        let form = headers(&[("content-type", "application/x-www-form-urlencoded")]);
        let push = parse_push(Format::Hub(Provider::GitHub), &form, body.as_bytes())
            .expect("form payload");
        assert_eq!(push.git_ref.as_deref(), Some("refs/heads/main"));
        assert_eq!(push.repository_urls.len(), 4);
        let err = parse_push(Format::Hub(Provider::GitHub), &form, b"other=1")
            .expect_err("no payload field");
        assert!(err.to_string().contains("`payload`"), "{err}");
    }

    #[test]
    fn a_deleted_branch_has_no_commit() {
        let body = r#"{"ref": "refs/heads/gone", "after": "0000000000000000000000000000000000000000",
            "deleted": true, "repository": {"clone_url": "https://github.com/o/r.git"}}"#;
        let push = parse(Format::Hub(Provider::GitHub), body).expect("parses");
        assert_eq!(push.git_ref.as_deref(), Some("refs/heads/gone"));
        assert_eq!(push.after, None);
    }

    /// Gitea's push payload (api.PushPayload): GitHub-like, no `git_url`.
    #[test]
    fn gitea_push() {
        let body = r#"{
          "ref": "refs/tags/v1.2.0",
          "before": "0000000000000000000000000000000000000000",
          "after": "b7c3e5d9a2f0e1c4d6b8a0f2e4c6d8b0a2c4e6f8",
          "compare_url": "",
          "commits": [],
          "total_commits": 0,
          "repository": {
            "id": 7, "name": "app", "full_name": "team/app",
            "html_url": "https://gitea.example.com/team/app",
            "ssh_url": "ssh://git@gitea.example.com:2222/team/app.git",
            "clone_url": "https://gitea.example.com/team/app.git",
            "default_branch": "main"
          },
          "pusher": {"login": "alice"},
          "sender": {"login": "alice"}
        }"#;
        let push = parse(Format::Hub(Provider::Gitea), body).expect("parses");
        assert_eq!(push.provider, Provider::Gitea);
        assert_eq!(
            push.repository_urls,
            [
                "https://gitea.example.com/team/app.git",
                "ssh://git@gitea.example.com:2222/team/app.git",
                "https://gitea.example.com/team/app"
            ]
        );
        assert_eq!(push.git_ref.as_deref(), Some("refs/tags/v1.2.0"));
        assert_eq!(
            push.after.as_deref(),
            Some("b7c3e5d9a2f0e1c4d6b8a0f2e4c6d8b0a2c4e6f8")
        );
    }

    /// GitLab's documented push event, trimmed.
    #[test]
    fn gitlab_push() {
        let body = r#"{
          "object_kind": "push", "event_name": "push",
          "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
          "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
          "ref": "refs/heads/master",
          "ref_protected": true,
          "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
          "user_username": "jsmith",
          "project_id": 15,
          "project": {
            "id": 15, "name": "Diaspora", "path_with_namespace": "mike/diaspora",
            "web_url": "http://example.com/mike/diaspora",
            "git_ssh_url": "git@example.com:mike/diaspora.git",
            "git_http_url": "http://example.com/mike/diaspora.git",
            "namespace": "Mike", "default_branch": "master",
            "homepage": "http://example.com/mike/diaspora",
            "url": "git@example.com:mike/diaspora.git",
            "ssh_url": "git@example.com:mike/diaspora.git",
            "http_url": "http://example.com/mike/diaspora.git"
          },
          "repository": {
            "name": "Diaspora", "url": "git@example.com:mike/diaspora.git",
            "homepage": "http://example.com/mike/diaspora",
            "git_http_url": "http://example.com/mike/diaspora.git",
            "git_ssh_url": "git@example.com:mike/diaspora.git"
          },
          "commits": [], "total_commits_count": 4
        }"#;
        let push = parse(Format::GitLab, body).expect("parses");
        assert_eq!(push.provider, Provider::GitLab);
        assert_eq!(
            push.repository_urls,
            [
                "http://example.com/mike/diaspora.git",
                "git@example.com:mike/diaspora.git",
                "http://example.com/mike/diaspora"
            ]
        );
        assert_eq!(push.git_ref.as_deref(), Some("refs/heads/master"));
        assert_eq!(
            push.after.as_deref(),
            Some("da1560886d4f094c3e6c9ef40349f7d38b5d27d7")
        );
    }

    /// Bitbucket Cloud's repo:push payload, trimmed: one branch moved.
    const BITBUCKET_CLOUD_PUSH: &str = r#"{
      "actor": {"display_name": "Alice", "type": "user"},
      "repository": {
        "type": "repository", "name": "app", "full_name": "team/app",
        "links": {
          "self": {"href": "https://api.bitbucket.org/2.0/repositories/team/app"},
          "html": {"href": "https://bitbucket.org/team/app"},
          "avatar": {"href": "https://bytebucket.org/ravatar/%7B1%7D"}
        },
        "scm": "git", "is_private": true
      },
      "push": {
        "changes": [{
          "new": {"type": "branch", "name": "main",
                  "target": {"type": "commit", "hash": "709d658dc5b6d6afcd46049c2f332ee3f515a67d"}},
          "old": {"type": "branch", "name": "main",
                  "target": {"type": "commit", "hash": "1e65c05c1d5171631d92438a13901ca7dae9618c"}},
          "created": false, "forced": false, "closed": false,
          "commits": [], "truncated": false
        }]
      }
    }"#;

    #[test]
    fn bitbucket_cloud_push() {
        let push = parse(Format::BitbucketCloud, BITBUCKET_CLOUD_PUSH).expect("parses");
        assert_eq!(
            push,
            PushEvent {
                provider: Provider::Bitbucket,
                repository_urls: vec!["https://bitbucket.org/team/app".into()],
                git_ref: Some("refs/heads/main".into()),
                after: Some("709d658dc5b6d6afcd46049c2f332ee3f515a67d".into()),
            }
        );
    }

    #[test]
    fn bitbucket_cloud_tags_deletions_and_several_refs() {
        let tag = r#"{"repository": {"links": {"html": {"href": "https://bitbucket.org/t/a"}}},
          "push": {"changes": [{"new": {"type": "tag", "name": "v2", "target": {"hash": "abc123"}}, "old": null}]}}"#;
        let push = parse(Format::BitbucketCloud, tag).expect("tag");
        assert_eq!(push.git_ref.as_deref(), Some("refs/tags/v2"));
        assert_eq!(push.after.as_deref(), Some("abc123"));

        let deleted = r#"{"repository": {"links": {"html": {"href": "https://bitbucket.org/t/a"}}},
          "push": {"changes": [{"new": null, "old": {"type": "branch", "name": "old", "target": {"hash": "abc"}}}]}}"#;
        let push = parse(Format::BitbucketCloud, deleted).expect("deleted");
        assert_eq!(push.git_ref.as_deref(), Some("refs/heads/old"));
        assert_eq!(push.after, None);

        let several = r#"{"repository": {"links": {"html": {"href": "https://bitbucket.org/t/a"}}},
          "push": {"changes": [
            {"new": {"type": "branch", "name": "a", "target": {"hash": "1"}}},
            {"new": {"type": "branch", "name": "b", "target": {"hash": "2"}}}]}}"#;
        let push = parse(Format::BitbucketCloud, several).expect("several");
        assert_eq!((push.git_ref, push.after), (None, None));
    }

    /// Bitbucket Server / Data Center repo:refs_changed, from Atlassian's "Event payload" page.
    const BITBUCKET_SERVER_PUSH: &str = r#"{
      "eventKey": "repo:refs_changed",
      "date": "2017-09-19T09:45:32+1000",
      "actor": {"name": "admin", "emailAddress": "admin@example.com", "id": 1,
                "displayName": "Administrator", "active": true, "slug": "admin", "type": "NORMAL"},
      "repository": {
        "slug": "repository", "id": 84, "name": "repository", "scmId": "git",
        "state": "AVAILABLE", "statusMessage": "Available", "forkable": true,
        "project": {"key": "PROJ", "id": 84, "name": "project", "public": false, "type": "NORMAL"},
        "public": false,
        "links": {
          "clone": [
            {"href": "ssh://git@bitbucket.example.com:7999/proj/repository.git", "name": "ssh"},
            {"href": "https://bitbucket.example.com/scm/proj/repository.git", "name": "http"}
          ],
          "self": [{"href": "https://bitbucket.example.com/projects/PROJ/repos/repository/browse"}]
        }
      },
      "changes": [{
        "ref": {"id": "refs/heads/master", "displayId": "master", "type": "BRANCH"},
        "refId": "refs/heads/master",
        "fromHash": "ecddabb624f6f5ba43816f5926e580a5f680a932",
        "toHash": "178864a7d521b6f5e720b386b2c2b0ef8563e0dc",
        "type": "UPDATE"
      }]
    }"#;

    #[test]
    fn bitbucket_server_push() {
        let push = parse(Format::BitbucketServer, BITBUCKET_SERVER_PUSH).expect("parses");
        assert_eq!(
            push,
            PushEvent {
                provider: Provider::Bitbucket,
                repository_urls: vec![
                    "ssh://git@bitbucket.example.com:7999/proj/repository.git".into(),
                    "https://bitbucket.example.com/scm/proj/repository.git".into(),
                ],
                git_ref: Some("refs/heads/master".into()),
                after: Some("178864a7d521b6f5e720b386b2c2b0ef8563e0dc".into()),
            }
        );
    }

    #[test]
    fn generic_push() {
        let push = parse(
            Format::Generic,
            r#"{"repository": "https://ci:tok3n@git.example.com/app.git", "ref": "refs/heads/dev", "after": "abc"}"#,
        )
        .expect("parses");
        assert_eq!(push.provider, Provider::Generic);
        // Whatever a sender embeds in a URL is not carried on (into logs) in the clear.
        assert_eq!(
            push.repository_urls,
            ["https://ci:***@git.example.com/app.git"]
        );
        assert_eq!(push.git_ref.as_deref(), Some("refs/heads/dev"));
        assert_eq!(push.after.as_deref(), Some("abc"));

        let bare = parse(Format::Generic, r#"{"repository": "git@host:org/app.git"}"#)
            .expect("ref and after are optional");
        assert_eq!((bare.git_ref, bare.after), (None, None));

        let err = parse(Format::Generic, r#"{"repo": "https://x/y"}"#).expect_err("typo");
        assert!(err.to_string().contains("unknown field `repo`"), "{err}");
    }

    #[test]
    fn errors_name_the_field_or_the_syntax_problem() {
        let err = parse(
            Format::Hub(Provider::GitHub),
            r#"{"ref": "refs/heads/main", "repository": {"clone_url": 42}}"#,
        )
        .expect_err("wrong type");
        assert_eq!(
            err,
            PayloadError::Field {
                format: "GitHub push",
                field: "repository.clone_url".into(),
                message: "invalid type: integer `42`, expected a string at line 1 column 57".into()
            }
        );

        let err = parse(Format::BitbucketServer, r#"{"changes": [{"refId": 1}]}"#)
            .expect_err("wrong type");
        assert!(
            err.to_string().contains("field `changes[0].refId`"),
            "{err}"
        );

        let err = parse(Format::GitLab, r#"{"ref": "refs/heads/main""#).expect_err("truncated");
        assert!(
            matches!(err, PayloadError::Syntax { .. })
                && err.to_string().contains("not valid JSON"),
            "{err}"
        );
        let err = parse(Format::GitLab, "[1, 2]").expect_err("not an object");
        assert!(err.to_string().starts_with("GitLab push payload"), "{err}");
        let err = parse(Format::GitLab, r#"{} trailing"#).expect_err("trailing data");
        assert!(matches!(err, PayloadError::Syntax { .. }), "{err}");

        let err = parse(
            Format::Hub(Provider::GitHub),
            r#"{"ref": "refs/heads/main"}"#,
        )
        .expect_err("no repository");
        assert!(
            err.to_string()
                .contains("names no repository URL (expected repository.clone_url"),
            "{err}"
        );
    }

    #[test]
    fn events_are_sorted_by_their_header() {
        let push = |provider, pairs: &[(&'static str, &str)]| classify(provider, &headers(pairs));
        assert_eq!(
            push(Provider::GitHub, &[("x-github-event", "push")]),
            Ok(Event::Push(Format::Hub(Provider::GitHub)))
        );
        assert_eq!(
            push(Provider::GitHub, &[("x-github-event", "ping")]),
            Ok(Event::Ignored("ping".into()))
        );
        assert_eq!(
            push(Provider::GitLab, &[("x-gitlab-event", "Tag Push Hook")]),
            Ok(Event::Push(Format::GitLab))
        );
        assert_eq!(
            push(
                Provider::GitLab,
                &[("x-gitlab-event", "Merge Request Hook")]
            ),
            Ok(Event::Ignored("Merge Request Hook".into()))
        );
        assert_eq!(
            push(Provider::Gitea, &[("x-forgejo-event", "push")]),
            Ok(Event::Push(Format::Hub(Provider::Gitea)))
        );
        assert_eq!(
            push(Provider::Bitbucket, &[("x-event-key", "repo:push")]),
            Ok(Event::Push(Format::BitbucketCloud))
        );
        assert_eq!(
            push(Provider::Bitbucket, &[("x-event-key", "repo:refs_changed")]),
            Ok(Event::Push(Format::BitbucketServer))
        );
        assert_eq!(
            push(Provider::Bitbucket, &[("x-event-key", "diagnostics:ping")]),
            Ok(Event::Ignored("diagnostics:ping".into()))
        );
        assert_eq!(
            push(Provider::Generic, &[]),
            Ok(Event::Push(Format::Generic))
        );
        let err = push(Provider::GitHub, &[]).expect_err("no event header");
        assert_eq!(
            err.to_string(),
            "missing X-GitHub-Event header (the GitHub event type)"
        );
    }
}
