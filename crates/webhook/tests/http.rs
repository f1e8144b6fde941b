//! The webhook router on a real loopback socket, called over HTTP/1.1 with reqwest: each provider's
//! signed push, and every refusal, with what was (not) triggered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use capstan_webhook::{
    BoxFuture, Limits, Provider, PushEvent, Receiver, ReceiverConfig, ReceiverError, Secret,
    TriggerOutcome, same_repository,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const SECRET: &str = "webhook-secret-4f7c1d";

/// A controller stand-in: named receivers, and sources that a push triggers when their URL is the
/// same repository as one the payload names. It records every event it was given.
struct Sources {
    receivers: HashMap<String, ReceiverConfig>,
    urls: Vec<String>,
    events: Mutex<Vec<(String, PushEvent)>>,
    unavailable: bool,
}

impl Sources {
    fn new() -> Self {
        let receivers = Provider::ALL
            .into_iter()
            .map(|provider| {
                (
                    provider.to_string(),
                    ReceiverConfig {
                        provider,
                        secret: Secret::new(SECRET),
                    },
                )
            })
            .collect();
        Sources {
            receivers,
            // How users write them in GitRepository objects: not the payloads' spellings.
            urls: vec![
                "https://github.com/octo-org/app".into(),
                "ssh://git@github.com/octo-org/app.git".into(),
                "https://gitea.example.com/team/app".into(),
                "git@example.com:mike/diaspora.git".into(),
                "https://bitbucket.org/team/app.git".into(),
                "https://bitbucket.example.com/scm/proj/repository.git".into(),
                "http://127.0.0.1:40177/app.git".into(),
                "https://github.com/octo-org/other".into(),
            ],
            events: Mutex::new(Vec::new()),
            unavailable: false,
        }
    }

    fn events(&self) -> Vec<(String, PushEvent)> {
        self.events.lock().expect("events lock").clone()
    }
}

impl Receiver for Sources {
    fn lookup<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<ReceiverConfig>, ReceiverError>> {
        Box::pin(async move { Ok(self.receivers.get(name).cloned()) })
    }

    fn trigger<'a>(
        &'a self,
        name: &'a str,
        event: PushEvent,
    ) -> BoxFuture<'a, Result<TriggerOutcome, ReceiverError>> {
        Box::pin(async move {
            if self.unavailable {
                return Err(ReceiverError::new("not the leader; try another replica"));
            }
            let triggered = self
                .urls
                .iter()
                .filter(|url| {
                    event
                        .repository_urls
                        .iter()
                        .any(|pushed| same_repository(pushed, url))
                })
                .count();
            self.events
                .lock()
                .expect("events lock")
                .push((name.to_owned(), event));
            Ok(TriggerOutcome { triggered })
        })
    }
}

struct Server {
    base: String,
    sources: Arc<Sources>,
    client: reqwest::Client,
}

async fn serve_with(sources: Sources, limits: Limits) -> Result<Server> {
    let sources = Arc::new(sources);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = capstan_webhook::router(sources.clone(), limits);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Server {
        base,
        sources,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
    })
}

async fn serve() -> Result<Server> {
    serve_with(Sources::new(), Limits::default()).await
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The headers each provider sends with a signed push of `body`.
fn push_headers(provider: Provider, body: &[u8]) -> Vec<(&'static str, String)> {
    let hex = sign(body);
    match provider {
        Provider::GitHub => vec![
            ("X-GitHub-Event", "push".into()),
            (
                "X-GitHub-Delivery",
                "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
            ),
            ("X-Hub-Signature-256", format!("sha256={hex}")),
        ],
        Provider::Gitea => vec![("X-Gitea-Event", "push".into()), ("X-Gitea-Signature", hex)],
        Provider::GitLab => vec![
            ("X-Gitlab-Event", "Push Hook".into()),
            ("X-Gitlab-Token", SECRET.into()),
        ],
        Provider::Bitbucket => vec![
            ("X-Event-Key", "repo:push".into()),
            ("X-Hub-Signature", format!("sha256={hex}")),
        ],
        Provider::Generic => vec![("X-Signature", format!("sha256={hex}"))],
    }
}

struct Answer {
    status: u16,
    body: serde_json::Value,
}

impl Server {
    async fn post(
        &self,
        receiver: &str,
        headers: &[(&str, String)],
        body: impl Into<reqwest::Body>,
    ) -> Result<Answer> {
        let mut request = self
            .client
            .post(format!("{}/hook/{receiver}", self.base))
            .body(body);
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.context("sending the hook")?;
        let status = response.status().as_u16();
        let text = response.text().await.context("reading the answer")?;
        let body = serde_json::from_str(&text)
            .with_context(|| format!("answer with status {status} is not JSON: {text:?}"))?;
        Ok(Answer { status, body })
    }

    async fn push(&self, provider: Provider, body: &str) -> Result<Answer> {
        let headers = push_headers(provider, body.as_bytes());
        self.post(provider.as_str(), &headers, body.to_owned())
            .await
    }
}

const GITHUB_PUSH: &str = r#"{
  "ref": "refs/heads/main",
  "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
  "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
  "created": false, "deleted": false, "forced": false,
  "repository": {
    "id": 186853002, "name": "app", "full_name": "Octo-Org/app",
    "html_url": "https://github.com/Octo-Org/app",
    "git_url": "git://github.com/Octo-Org/app.git",
    "ssh_url": "git@github.com:Octo-Org/app.git",
    "clone_url": "https://github.com/Octo-Org/app.git",
    "default_branch": "main"
  },
  "pusher": {"name": "octocat", "email": "octocat@github.com"},
  "commits": []
}"#;

#[tokio::test]
async fn github_push_triggers_the_sources_of_that_repository() -> Result<()> {
    let server = serve().await?;
    let answer = server.push(Provider::GitHub, GITHUB_PUSH).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // Two sources are spelled as this repository; `octo-org/other` is not.
    assert_eq!(answer.body, serde_json::json!({ "triggered": 2 }));
    assert_eq!(
        server.sources.events(),
        [(
            "github".to_owned(),
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
        )]
    );
    Ok(())
}

#[tokio::test]
async fn github_form_encoded_push_is_read_from_the_payload_field() -> Result<()> {
    let server = serve().await?;
    let body = format!(
        "payload={}",
        GITHUB_PUSH
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>()
    );
    let mut headers = push_headers(Provider::GitHub, body.as_bytes());
    headers.push(("content-type", "application/x-www-form-urlencoded".into()));
    let answer = server.post("github", &headers, body).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["triggered"], 2);
    Ok(())
}

#[tokio::test]
async fn gitea_push_triggers() -> Result<()> {
    let server = serve().await?;
    let body = r#"{
      "ref": "refs/heads/main",
      "before": "4d2a8ec3b6b9e0a7f5c1d3e2b4a6c8d0e2f4a6b8",
      "after": "b7c3e5d9a2f0e1c4d6b8a0f2e4c6d8b0a2c4e6f8",
      "commits": [{"id": "b7c3e5d9a2f0e1c4d6b8a0f2e4c6d8b0a2c4e6f8", "message": "bump\n"}],
      "repository": {
        "id": 7, "name": "app", "full_name": "team/app",
        "html_url": "https://gitea.example.com/team/app",
        "ssh_url": "git@gitea.example.com:team/app.git",
        "clone_url": "https://gitea.example.com/team/app.git"
      },
      "pusher": {"login": "alice"}
    }"#;
    let answer = server.push(Provider::Gitea, body).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["triggered"], 1);
    let events = server.sources.events();
    assert_eq!(events.len(), 1);
    let event = &events[0].1;
    assert_eq!(event.provider, Provider::Gitea);
    assert_eq!(
        event.repository_urls,
        [
            "https://gitea.example.com/team/app.git",
            "git@gitea.example.com:team/app.git",
            "https://gitea.example.com/team/app"
        ]
    );
    assert_eq!(event.git_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(
        event.after.as_deref(),
        Some("b7c3e5d9a2f0e1c4d6b8a0f2e4c6d8b0a2c4e6f8")
    );
    Ok(())
}

#[tokio::test]
async fn gitlab_push_with_the_right_token_triggers_and_a_wrong_one_does_not() -> Result<()> {
    let server = serve().await?;
    let body = r#"{
      "object_kind": "tag_push", "event_name": "tag_push",
      "before": "0000000000000000000000000000000000000000",
      "after": "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
      "ref": "refs/tags/v1.0.0",
      "checkout_sha": "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7",
      "project": {
        "id": 1, "name": "Diaspora", "path_with_namespace": "mike/diaspora",
        "web_url": "http://example.com/mike/diaspora",
        "git_ssh_url": "git@example.com:mike/diaspora.git",
        "git_http_url": "http://example.com/mike/diaspora.git"
      },
      "commits": [], "total_commits_count": 0
    }"#;
    let wrong = [
        ("X-Gitlab-Event", "Tag Push Hook".to_owned()),
        ("X-Gitlab-Token", format!("{SECRET}x")),
    ];
    let answer = server.post("gitlab", &wrong, body).await?;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(server.sources.events().is_empty());

    let right = [
        ("X-Gitlab-Event", "Tag Push Hook".to_owned()),
        ("X-Gitlab-Token", SECRET.to_owned()),
    ];
    let answer = server.post("gitlab", &right, body).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["triggered"], 1);
    let events = server.sources.events();
    assert_eq!(events[0].1.provider, Provider::GitLab);
    assert_eq!(events[0].1.git_ref.as_deref(), Some("refs/tags/v1.0.0"));
    assert_eq!(
        events[0].1.repository_urls,
        [
            "http://example.com/mike/diaspora.git",
            "git@example.com:mike/diaspora.git",
            "http://example.com/mike/diaspora"
        ]
    );
    Ok(())
}

#[tokio::test]
async fn bitbucket_cloud_and_server_pushes_trigger() -> Result<()> {
    let server = serve().await?;
    let cloud = r#"{
      "actor": {"display_name": "Alice"},
      "repository": {"name": "app", "full_name": "team/app",
        "links": {"html": {"href": "https://bitbucket.org/team/app"}}},
      "push": {"changes": [{
        "new": {"type": "branch", "name": "main", "target": {"hash": "709d658dc5b6d6afcd46049c2f332ee3f515a67d"}},
        "old": {"type": "branch", "name": "main", "target": {"hash": "1e65c05c1d5171631d92438a13901ca7dae9618c"}},
        "created": false, "forced": false, "closed": false, "commits": [], "truncated": false}]}
    }"#;
    let answer = server.push(Provider::Bitbucket, cloud).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["triggered"], 1);

    let data_center = r#"{
      "eventKey": "repo:refs_changed", "date": "2024-03-01T10:00:00+0000",
      "actor": {"name": "admin", "displayName": "Administrator"},
      "repository": {"slug": "repository", "name": "repository",
        "project": {"key": "PROJ"},
        "links": {"clone": [
          {"href": "ssh://git@bitbucket.example.com:7999/proj/repository.git", "name": "ssh"},
          {"href": "https://bitbucket.example.com/scm/proj/repository.git", "name": "http"}]}},
      "changes": [{"ref": {"id": "refs/heads/release", "displayId": "release", "type": "BRANCH"},
        "refId": "refs/heads/release",
        "fromHash": "ecddabb624f6f5ba43816f5926e580a5f680a932",
        "toHash": "178864a7d521b6f5e720b386b2c2b0ef8563e0dc", "type": "UPDATE"}]
    }"#;
    let hex = sign(data_center.as_bytes());
    let headers = [
        ("X-Event-Key", "repo:refs_changed".to_owned()),
        (
            "X-Request-Id",
            "bd5a0a46-b45c-4b6a-8c53-0a5e2b2e8c2f".to_owned(),
        ),
        ("X-Hub-Signature", format!("sha256={hex}")),
    ];
    let answer = server.post("bitbucket", &headers, data_center).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["triggered"], 1);

    let events = server.sources.events();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0].1,
        PushEvent {
            provider: Provider::Bitbucket,
            repository_urls: vec!["https://bitbucket.org/team/app".into()],
            git_ref: Some("refs/heads/main".into()),
            after: Some("709d658dc5b6d6afcd46049c2f332ee3f515a67d".into()),
        }
    );
    assert_eq!(
        events[1].1,
        PushEvent {
            provider: Provider::Bitbucket,
            repository_urls: vec![
                "ssh://git@bitbucket.example.com:7999/proj/repository.git".into(),
                "https://bitbucket.example.com/scm/proj/repository.git".into(),
            ],
            git_ref: Some("refs/heads/release".into()),
            after: Some("178864a7d521b6f5e720b386b2c2b0ef8563e0dc".into()),
        }
    );
    Ok(())
}

#[tokio::test]
async fn generic_push_triggers() -> Result<()> {
    let server = serve().await?;
    let body = r#"{"repository": "http://127.0.0.1:40177/app", "ref": "refs/heads/main", "after": "3f1e"}"#;
    let answer = server.push(Provider::Generic, body).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, serde_json::json!({ "triggered": 1 }));
    assert_eq!(
        server.sources.events()[0].1.repository_urls,
        ["http://127.0.0.1:40177/app"]
    );
    Ok(())
}

#[tokio::test]
async fn a_push_of_an_unknown_repository_triggers_nothing_but_succeeds() -> Result<()> {
    let server = serve().await?;
    let body = r#"{"repository": "https://elsewhere.example/app.git"}"#;
    let answer = server.push(Provider::Generic, body).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body, serde_json::json!({ "triggered": 0 }));
    Ok(())
}

#[tokio::test]
async fn a_bad_signature_is_401_and_triggers_nothing() -> Result<()> {
    let server = serve().await?;
    for provider in [
        Provider::GitHub,
        Provider::Gitea,
        Provider::Bitbucket,
        Provider::Generic,
    ] {
        // Signed for one body, sent with another: a tampered payload.
        let headers = push_headers(provider, GITHUB_PUSH.as_bytes());
        let tampered = GITHUB_PUSH.replace("refs/heads/main", "refs/heads/evil");
        let answer = server.post(provider.as_str(), &headers, tampered).await?;
        assert_eq!(answer.status, 401, "{provider}: {}", answer.body);
        let message = answer.body["error"].as_str().unwrap_or_default();
        assert!(message.contains("does not match"), "{provider}: {message}");
        // Neither the secret nor the signature is echoed.
        let signature = &headers.last().expect("signature header").1;
        assert!(
            !message.contains(SECRET) && !message.contains(signature.as_str()),
            "{message}"
        );
    }
    assert!(server.sources.events().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_missing_signature_header_is_401_and_triggers_nothing() -> Result<()> {
    let server = serve().await?;
    for provider in Provider::ALL {
        let headers: Vec<_> = push_headers(provider, GITHUB_PUSH.as_bytes())
            .into_iter()
            .filter(|(name, _)| !name.contains("Signature") && !name.contains("Token"))
            .collect();
        let answer = server
            .post(provider.as_str(), &headers, GITHUB_PUSH)
            .await?;
        assert_eq!(answer.status, 401, "{provider}: {}", answer.body);
        assert!(
            answer.body["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with("missing X-"),
            "{provider}: {}",
            answer.body
        );
    }
    assert!(server.sources.events().is_empty());
    Ok(())
}

#[tokio::test]
async fn an_oversized_body_is_413_and_triggers_nothing() -> Result<()> {
    let server = serve().await?;
    // A valid push padded past the default 1 MiB limit, correctly signed: size alone refuses it.
    let padding = "x".repeat(3 * 1024 * 1024);
    let body = format!(r#"{{"repository": "http://127.0.0.1:40177/app", "ref": "{padding}"}}"#);
    let answer = server.push(Provider::Generic, &body).await?;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(
        answer.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("larger than 1048576 bytes"),
        "{}",
        answer.body
    );
    // Just under the limit passes (the limit is on the body, not on something else).
    let fits = format!(
        r#"{{"repository": "http://127.0.0.1:40177/app", "ref": "{}"}}"#,
        "x".repeat(1024 * 1024 - 100)
    );
    assert!(fits.len() <= 1024 * 1024);
    let answer = server.push(Provider::Generic, &fits).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(server.sources.events().len(), 1, "only the body that fits");
    Ok(())
}

/// Sends a body with `Transfer-Encoding: chunked` (no Content-Length: the size is only known while
/// reading) over a raw socket, pausing before chunks as asked; returns the status and JSON answer.
async fn post_chunked(
    server: &Server,
    receiver: &str,
    headers: &[(&str, String)],
    chunks: Vec<(Duration, Vec<u8>)>,
) -> Result<Answer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await?;
    let mut head = format!(
        "POST /hook/{receiver} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    socket.write_all(head.as_bytes()).await?;
    for (pause, chunk) in chunks {
        tokio::time::sleep(pause).await;
        let frame = [
            format!("{:x}\r\n", chunk.len()).into_bytes(),
            chunk,
            b"\r\n".to_vec(),
        ]
        .concat();
        // The server may answer (413, 408) and close before the whole body is sent.
        if socket.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = socket.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = socket.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status line in {text:?}"))?;
    let raw_body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    // The answer may itself be chunked: take the JSON object inside.
    let json = raw_body
        .find('{')
        .and_then(|start| raw_body.rfind('}').map(|end| &raw_body[start..=end]))
        .unwrap_or("null");
    let body = serde_json::from_str(json)
        .with_context(|| format!("answer with status {status} is not JSON: {raw_body:?}"))?;
    Ok(Answer { status, body })
}

fn chunks_of(body: &[u8], size: usize) -> Vec<(Duration, Vec<u8>)> {
    body.chunks(size)
        .map(|part| (Duration::ZERO, part.to_vec()))
        .collect()
}

#[tokio::test]
async fn an_oversized_chunked_body_is_413_and_triggers_nothing() -> Result<()> {
    let server = serve().await?;
    let padding = "x".repeat(3 * 1024 * 1024);
    let body = format!(r#"{{"repository": "http://127.0.0.1:40177/app", "ref": "{padding}"}}"#);
    let headers = push_headers(Provider::Generic, body.as_bytes());
    let answer = post_chunked(
        &server,
        "generic",
        &headers,
        chunks_of(body.as_bytes(), 64 * 1024),
    )
    .await?;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(server.sources.events().is_empty());

    // The same path with a body that fits: chunked transfer itself is fine.
    let body = r#"{"repository": "http://127.0.0.1:40177/app", "ref": "refs/heads/main"}"#;
    let headers = push_headers(Provider::Generic, body.as_bytes());
    let answer = post_chunked(&server, "generic", &headers, chunks_of(body.as_bytes(), 7)).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(server.sources.events().len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_stalled_body_is_408_and_triggers_nothing() -> Result<()> {
    let limits = Limits {
        read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = serve_with(Sources::new(), limits).await?;
    let body = r#"{"repository": "http://127.0.0.1:40177/app"}"#;
    let headers = push_headers(Provider::Generic, body.as_bytes());
    let (head, tail) = body.as_bytes().split_at(10);
    let chunks = vec![
        (Duration::ZERO, head.to_vec()),
        (Duration::from_secs(3), tail.to_vec()),
    ];
    let answer = post_chunked(&server, "generic", &headers, chunks).await?;
    assert_eq!(answer.status, 408, "{}", answer.body);
    assert!(server.sources.events().is_empty());
    Ok(())
}

#[tokio::test]
async fn github_ping_and_other_events_trigger_nothing() -> Result<()> {
    let server = serve().await?;
    let ping = r#"{"zen": "Keep it logically awesome.", "hook_id": 1,
        "hook": {"type": "Repository", "events": ["push"]},
        "repository": {"clone_url": "https://github.com/Octo-Org/app.git"}}"#;
    let mut headers = push_headers(Provider::GitHub, ping.as_bytes());
    headers[0].1 = "ping".into();
    let answer = server.post("github", &headers, ping).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.body,
        serde_json::json!({ "triggered": 0, "ignored": "ping" })
    );

    headers[0].1 = "issues".into();
    let answer = server.post("github", &headers, ping).await?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["ignored"], "issues");

    // An ignored event still needs a valid signature.
    headers[2].1 = format!("sha256={}", "0".repeat(64));
    let answer = server.post("github", &headers, ping).await?;
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert!(server.sources.events().is_empty());
    Ok(())
}

#[tokio::test]
async fn an_unknown_receiver_is_404() -> Result<()> {
    let server = serve().await?;
    let headers = push_headers(Provider::GitHub, GITHUB_PUSH.as_bytes());
    let answer = server.post("nope", &headers, GITHUB_PUSH).await?;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(answer.body["error"], "no webhook receiver named \"nope\"");
    assert!(server.sources.events().is_empty());
    // Only POST is routed.
    let status = server
        .client
        .get(format!("{}/hook/github", server.base))
        .send()
        .await?
        .status();
    assert_eq!(status.as_u16(), 405);
    Ok(())
}

#[tokio::test]
async fn malformed_json_with_a_valid_signature_is_400_naming_the_problem() -> Result<()> {
    let server = serve().await?;
    let truncated = &GITHUB_PUSH[..GITHUB_PUSH.len() / 2];
    let answer = server.push(Provider::GitHub, truncated).await?;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let message = answer.body["error"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("GitHub push payload is not valid JSON"),
        "{message}"
    );

    let wrong_type = GITHUB_PUSH.replace(
        r#""clone_url": "https://github.com/Octo-Org/app.git""#,
        r#""clone_url": ["https://github.com/Octo-Org/app.git"]"#,
    );
    let answer = server.push(Provider::GitHub, &wrong_type).await?;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let message = answer.body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("field `repository.clone_url`"),
        "{message}"
    );

    let answer = server
        .push(Provider::Generic, r#"{"ref": "refs/heads/main"}"#)
        .await?;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert!(server.sources.events().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_failing_receiver_is_503_with_its_message() -> Result<()> {
    let sources = Sources {
        unavailable: true,
        ..Sources::new()
    };
    let server = serve_with(sources, Limits::default()).await?;
    let answer = server.push(Provider::GitHub, GITHUB_PUSH).await?;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.body["error"], "not the leader; try another replica");
    Ok(())
}

/// Sends a whole HTTP/1.1 request over a plain blocking socket and only then reads the answer, as
/// simple clients do (Python's `http.client`); on its own thread, so that the server runs while it
/// writes. Returns the status and the raw answer.
async fn write_all_then_read(base: &str, head: String, body: Vec<u8>) -> Result<(u16, String)> {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://").to_owned();
    let answer = tokio::task::spawn_blocking(move || -> Result<String> {
        let mut socket = std::net::TcpStream::connect(address)?;
        socket.set_read_timeout(Some(Duration::from_secs(20)))?;
        socket
            .write_all(head.as_bytes())
            .context("writing the head")?;
        socket.write_all(&body).context("writing the body")?;
        let mut answer = Vec::new();
        socket
            .read_to_end(&mut answer)
            .context("reading the answer")?;
        Ok(String::from_utf8_lossy(&answer).into_owned())
    })
    .await??;
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP answer: {answer:?}"))?;
    Ok((status, answer))
}

#[tokio::test]
async fn a_client_that_writes_everything_first_still_reads_the_413() -> Result<()> {
    let server = serve().await?;
    let body = vec![b'x'; 12 * 1024 * 1024];
    let hex = sign(&body);
    let head = |framing: &str| {
        format!(
            "POST /hook/generic HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             X-Signature: sha256={hex}\r\n{framing}\r\n\r\n",
            server.base.trim_start_matches("http://")
        )
    };

    let mut chunked = Vec::new();
    for part in body.chunks(16 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    // 12 MiB is more than loopback socket buffers absorb before the server answers, and several
    // rounds leave no room for luck: without the draining, every run of this test failed here
    // with "broken pipe" while writing the body.
    for round in 0..5 {
        let (status, answer) = write_all_then_read(
            &server.base,
            head(&format!("Content-Length: {}", body.len())),
            body.clone(),
        )
        .await
        .with_context(|| format!("round {round}, Content-Length"))?;
        assert_eq!(status, 413, "{answer}");
        assert!(answer.contains("larger than 1048576 bytes"), "{answer}");

        let (status, answer) = write_all_then_read(
            &server.base,
            head("Transfer-Encoding: chunked"),
            chunked.clone(),
        )
        .await
        .with_context(|| format!("round {round}, chunked"))?;
        assert_eq!(status, 413, "{answer}");
    }
    assert!(server.sources.events().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_client_waiting_for_100_continue_gets_the_413_without_sending_the_body() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = serve().await?;
    let address = server.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await?;
    let head = format!(
        "POST /hook/generic HTTP/1.1\r\nHost: {address}\r\nX-Signature: sha256=00\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        64 * 1024 * 1024
    );
    socket.write_all(head.as_bytes()).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
        .await
        .context("the server waited for a body it was told not to expect")??;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    Ok(())
}
