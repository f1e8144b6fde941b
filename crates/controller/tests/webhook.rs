//! Webhooks end to end: a signed GitHub push fetches the GitRepository at once (its interval is an
//! hour) and the app applies the commit; a bad signature triggers nothing.

mod common;

use std::time::{Duration, Instant};

use capstan_controller::server::NamedReceiver;
use capstan_webhook::{Provider, ReceiverConfig, Secret};
use common::*;
use hmac::{Hmac, Mac};
use serde_json::json;

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_push_applies_at_once_and_a_bad_signature_triggers_nothing() {
    let ns = namespace("ctl-hook").await;
    let ns = ns.name().to_string();
    let repo = Repo::new("hooked", &[("app/a.yaml", &config_map("a", "one"))]);
    let mut setup = ControllerSetup::new(&ns);
    setup.listen = true;
    setup.receivers = vec![NamedReceiver {
        name: "github".into(),
        config: ReceiverConfig {
            provider: Provider::GitHub,
            secret: Secret::new("s3cret"),
        },
    }];
    let controller = setup.start();
    let addr = controller.addr.expect("listening");
    create_repo(&ns, "hooked", &repo.url(), "1h").await;
    create_app(
        &ns,
        "hooked",
        json!({
            "sourceRef": {"name": "hooked"}, "path": "app", "destination": {"namespace": ns},
            "syncPolicy": {"automated": true, "interval": "1h"}
        }),
    )
    .await;
    wait_ready(
        &ns,
        "hooked",
        "True",
        Some("Synced"),
        Duration::from_secs(60),
    )
    .await;

    let http = reqwest::Client::new();
    let url = format!("http://{addr}/hook/github");
    let commit = repo.push(&[("app/a.yaml", &config_map("a", "two"))], "two");
    let payload = json!({
        "ref": "refs/heads/main", "after": commit,
        "repository": {"clone_url": repo.url(), "html_url": "https://example.invalid/hooked"}
    })
    .to_string();

    // A wrong signature: 401, nothing fetched.
    let refused = http
        .post(&url)
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", sign("wrong", payload.as_bytes()))
        .header("Content-Type", "application/json")
        .body(payload.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status(), 401);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        config_map_value(&ns, "a").await.as_deref(),
        Some("one"),
        "a refused hook must not sync"
    );

    let pushed = Instant::now();
    let accepted = http
        .post(&url)
        .header("X-GitHub-Event", "push")
        .header("X-Hub-Signature-256", sign("s3cret", payload.as_bytes()))
        .header("Content-Type", "application/json")
        .body(payload)
        .send()
        .await
        .expect("post");
    assert_eq!(accepted.status(), 200);
    let body: serde_json::Value =
        serde_json::from_str(&accepted.text().await.expect("body")).expect("json");
    assert_eq!(body["triggered"], 1, "{body}");
    wait_config_map(&ns, "a", "two", Duration::from_secs(20)).await;
    let latency = pushed.elapsed();
    assert!(
        latency < Duration::from_secs(5),
        "push → applied took {latency:?}"
    );

    // Unknown receivers are 404; an oversized body is 413.
    let missing = http
        .post(format!("http://{addr}/hook/nope"))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(missing.status(), 404);
    let huge = http
        .post(&url)
        .header("X-GitHub-Event", "push")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .expect("post");
    assert_eq!(huge.status(), 413);
}
