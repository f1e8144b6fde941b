//! The controller on the real control plane with a real git daemon: push → applied, drift →
//! OutOfSync and healed, bad commits and unreachable servers change nothing, dependsOn, rollback.

mod common;

use std::time::{Duration, Instant};

use capstan_test_support::eventually;
use common::*;
use serde_json::json;

fn app_spec(repo: &str, dest: &str, self_heal: bool) -> serde_json::Value {
    json!({
        "sourceRef": {"name": repo},
        "path": "app",
        "destination": {"namespace": dest},
        "syncPolicy": {"automated": true, "prune": true, "selfHeal": self_heal, "interval": "1m"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn push_is_applied_pruned_and_drift_is_healed() {
    let ns = namespace("ctl-push").await;
    let ns = ns.name().to_string();
    let repo = Repo::new(
        "shop",
        &[
            ("app/a.yaml", &config_map("a", "one")),
            ("app/b.yaml", &config_map("b", "one")),
        ],
    );
    let _controller = ControllerSetup::new(&ns).start();
    create_repo(&ns, "shop", &repo.url(), "1s").await;
    create_app(&ns, "shop", app_spec("shop", &ns, true)).await;

    let ready = wait_ready(&ns, "shop", "True", Some("Synced"), Duration::from_secs(60)).await;
    assert_eq!(config_map_value(&ns, "a").await.as_deref(), Some("one"));
    let status = ready.status.expect("status");
    assert_eq!(
        status.sync.as_ref().map(|s| s.status.as_str()),
        Some("Synced")
    );
    assert_eq!(status.inventory.as_ref().map(|i| i.objects), Some(2));
    assert_eq!(status.history[0].result, "Succeeded");

    // A push changes a, removes b: applied and pruned on the next poll (interval 1s).
    let commit = repo.push(
        &[("app/a.yaml", &config_map("a", "two")), ("app/b.yaml", "")],
        "two",
    );
    eventually(Duration::from_secs(30), "new revision applied", || {
        let ns = ns.clone();
        async move {
            let a = config_map_value(&ns, "a").await;
            let b = config_map_value(&ns, "b").await;
            if a.as_deref() == Some("two") && b.is_none() {
                Ok(())
            } else {
                Err(format!("a={a:?} b={b:?}"))
            }
        }
    })
    .await;
    let app = eventually(
        Duration::from_secs(20),
        "status names the new revision",
        || {
            let (ns, commit) = (ns.clone(), commit.clone());
            async move {
                let app = get_app(&ns, "shop").await;
                let revision = app
                    .status
                    .clone()
                    .unwrap_or_default()
                    .sync
                    .map(|s| s.revision);
                let ready = condition(&app, "Ready").is_some_and(|c| c.0 == "True");
                if ready && revision.as_ref().is_some_and(|r| r.ends_with(&commit)) {
                    Ok(app)
                } else {
                    Err(format!("{revision:?}"))
                }
            }
        },
    )
    .await;
    let status = app.status.expect("status");
    assert_eq!(status.history[0].trigger, "source");

    // kubectl edits a field Git declares: healed within seconds (selfHeal), not at the 1m interval.
    let edited = Instant::now();
    patch_config_map(&ns, "a", None, r#"{"data":{"key":"edited"}}"#);
    wait_config_map(&ns, "a", "two", Duration::from_secs(20)).await;
    let healed_in = edited.elapsed();
    assert!(
        healed_in < Duration::from_secs(10),
        "healed after {healed_in:?}"
    );
    let app = eventually(Duration::from_secs(10), "drift in history", || {
        let ns = ns.clone();
        async move {
            let app = get_app(&ns, "shop").await;
            let history = app.status.clone().unwrap_or_default().history;
            if history.first().is_some_and(|h| h.trigger == "drift") {
                Ok(app)
            } else {
                Err(format!("{history:?}"))
            }
        }
    })
    .await;
    assert_eq!(
        app.status.and_then(|s| s.sync).map(|s| s.status.as_str()),
        Some("Synced")
    );

    // Events name what happened.
    let out = kubectl()
        .args([
            "-n",
            &ns,
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=shop",
            "-o",
            "jsonpath={.items[*].reason}",
        ])
        .output()
        .expect("kubectl");
    let reasons = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(reasons.contains("Synced"), "events: {reasons}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drift_without_self_heal_is_reported_with_its_manager() {
    let ns = namespace("ctl-drift").await;
    let ns = ns.name().to_string();
    let repo = Repo::new("cfg", &[("app/a.yaml", &config_map("a", "git"))]);
    let _controller = ControllerSetup::new(&ns).start();
    create_repo(&ns, "cfg", &repo.url(), "1m").await;
    create_app(&ns, "cfg", app_spec("cfg", &ns, false)).await;
    wait_ready(&ns, "cfg", "True", Some("Synced"), Duration::from_secs(60)).await;

    let edited = Instant::now();
    patch_config_map(&ns, "a", Some("intruder"), r#"{"data":{"key":"live"}}"#);
    let app = eventually(Duration::from_secs(10), "OutOfSync with drift", || {
        let ns = ns.clone();
        async move {
            let app = get_app(&ns, "cfg").await;
            let status = app.status.clone().unwrap_or_default();
            match status.sync.as_ref().map(|s| s.status.as_str()) {
                Some("OutOfSync") if !status.drift.is_empty() => Ok(app),
                other => Err(format!("{other:?} drift={:?}", status.drift)),
            }
        }
    })
    .await;
    let seen_in = edited.elapsed();
    assert!(
        seen_in < Duration::from_secs(3),
        "OutOfSync after {seen_in:?} (goal 2 s)"
    );
    let drift = &app.status.as_ref().expect("status").drift[0];
    assert!(
        drift.object.contains("ConfigMap") && drift.object.ends_with("/a"),
        "{drift:?}"
    );
    assert_eq!(drift.managers, vec!["intruder".to_string()]);
    assert_eq!(drift.fields, vec![".data.key".to_string()]);
    // Not healed: selfHeal is off.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(config_map_value(&ns, "a").await.as_deref(), Some("live"));

    // A manual sync request takes Git's value back.
    patch_app(
        &ns,
        "cfg",
        json!({"metadata": {"annotations": {"capstan.dev/requested-at": "now-1"}}}),
    )
    .await;
    wait_config_map(&ns, "a", "git", Duration::from_secs(20)).await;
    let app = wait_ready(&ns, "cfg", "True", Some("Synced"), Duration::from_secs(20)).await;
    assert_eq!(app.status.expect("status").history[0].trigger, "manual");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_commit_stalls_and_git_outage_keeps_what_runs() {
    let ns = namespace("ctl-bad").await;
    let ns = ns.name().to_string();
    let mut repo = Repo::new(
        "svc",
        &[
            ("app/a.yaml", &config_map("a", "one")),
            ("app/b.yaml", &config_map("b", "one")),
        ],
    );
    let _controller = ControllerSetup::new(&ns).start();
    create_repo(&ns, "svc", &repo.url(), "1s").await;
    create_app(&ns, "svc", app_spec("svc", &ns, true)).await;
    wait_ready(&ns, "svc", "True", Some("Synced"), Duration::from_secs(60)).await;

    // A commit with a broken manifest (and b removed): Stalled naming the file; nothing pruned.
    repo.push(
        &[
            ("app/b.yaml", ""),
            (
                "app/broken.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: [oops\n",
            ),
        ],
        "broken",
    );
    let app = wait_ready(
        &ns,
        "svc",
        "False",
        Some("RenderFailed"),
        Duration::from_secs(30),
    )
    .await;
    let (stalled, _, message) = condition(&app, "Stalled").expect("Stalled condition");
    assert_eq!(stalled, "True");
    assert!(message.contains("broken.yaml"), "{message}");
    assert_eq!(
        config_map_value(&ns, "b").await.as_deref(),
        Some("one"),
        "b must not be pruned"
    );

    // A commit the server rejects (schema error): Stalled naming the object, nothing pruned.
    repo.push(
        &[(
            "app/broken.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n  key: [1, 2]\n",
        )],
        "rejected",
    );
    let app = wait_ready(
        &ns,
        "svc",
        "False",
        Some("PlanFailed"),
        Duration::from_secs(30),
    )
    .await;
    let (_, _, message) = condition(&app, "Ready").expect("Ready");
    assert!(
        message.contains("ConfigMap") && message.contains("/c"),
        "{message}"
    );
    assert_eq!(config_map_value(&ns, "b").await.as_deref(), Some("one"));

    // The git server goes away: the GitRepository says so; the live state is untouched.
    repo.daemon.take();
    eventually(Duration::from_secs(30), "GitRepository Ready=False", || {
        let ns = ns.clone();
        async move {
            let api: kube::Api<capstan_controller::api::GitRepository> =
                kube::Api::namespaced(client().await, &ns);
            let repo = api.get("svc").await.map_err(|e| e.to_string())?;
            let ready = repo
                .status
                .unwrap_or_default()
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready");
            match ready {
                Some(c) if c.status == "False" && c.reason == "FetchFailed" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    assert_eq!(config_map_value(&ns, "a").await.as_deref(), Some("one"));
    assert_eq!(config_map_value(&ns, "b").await.as_deref(), Some("one"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn depends_on_orders_apps_and_cycles_are_reported() {
    let ns = namespace("ctl-deps").await;
    let ns = ns.name().to_string();
    let repo = Repo::new(
        "mono",
        &[
            ("base/a.yaml", &config_map("base", "x")),
            ("top/a.yaml", &config_map("top", "x")),
        ],
    );
    let _controller = ControllerSetup::new(&ns).start();
    create_repo(&ns, "mono", &repo.url(), "1m").await;
    // `top` is created first and depends on `base`, which does not exist yet.
    let mut top = app_spec("mono", &ns, false);
    top["path"] = json!("top");
    top["dependsOn"] = json!([{"name": "base"}]);
    create_app(&ns, "top", top).await;
    let waiting = wait_ready(
        &ns,
        "top",
        "False",
        Some("DependencyNotReady"),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        condition(&waiting, "Ready")
            .expect("Ready")
            .2
            .contains("base")
    );
    assert_eq!(
        config_map_value(&ns, "top").await,
        None,
        "top must wait for base"
    );

    let mut base = app_spec("mono", &ns, false);
    base["path"] = json!("base");
    create_app(&ns, "base", base).await;
    let base_ready = wait_ready(&ns, "base", "True", None, Duration::from_secs(60)).await;
    let top_ready = wait_ready(&ns, "top", "True", None, Duration::from_secs(30)).await;
    let time = |app: &capstan_controller::api::Application| {
        app.status.as_ref().expect("status").history[0].time.clone()
    };
    assert!(
        time(&base_ready) <= time(&top_ready),
        "base synced before top"
    );

    // A cycle: c → d → c.
    let mut c = app_spec("mono", &ns, false);
    c["dependsOn"] = json!([{"name": "d"}]);
    let mut d = app_spec("mono", &ns, false);
    d["dependsOn"] = json!([{"name": "c"}]);
    create_app(&ns, "c", c).await;
    create_app(&ns, "d", d).await;
    let stalled = wait_ready(
        &ns,
        "c",
        "False",
        Some("DependencyCycle"),
        Duration::from_secs(30),
    )
    .await;
    let message = condition(&stalled, "Ready").expect("Ready").2;
    assert!(
        message.contains("/c") && message.contains("/d"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_pins_an_old_revision_until_unpinned() {
    let ns = namespace("ctl-pin").await;
    let ns = ns.name().to_string();
    let repo = Repo::new("pin", &[("app/a.yaml", &config_map("a", "v1"))]);
    let first = capstan_test_support::git_servers::git(
        &repo.repos.served_root().join("pin.git"),
        &["rev-parse", "main"],
    );
    let _controller = ControllerSetup::new(&ns).start();
    create_repo(&ns, "pin", &repo.url(), "1s").await;
    create_app(&ns, "pin", app_spec("pin", &ns, false)).await;
    wait_ready(&ns, "pin", "True", Some("Synced"), Duration::from_secs(60)).await;
    repo.push(&[("app/a.yaml", &config_map("a", "v2"))], "v2");
    wait_config_map(&ns, "a", "v2", Duration::from_secs(30)).await;

    patch_app(
        &ns,
        "pin",
        json!({"metadata": {"annotations": {"capstan.dev/pinned-revision": first.trim()}}}),
    )
    .await;
    wait_config_map(&ns, "a", "v1", Duration::from_secs(30)).await;
    let app = wait_ready(&ns, "pin", "True", None, Duration::from_secs(20)).await;
    let status = app.status.expect("status");
    assert_eq!(status.pinned_revision.as_deref(), Some(first.trim()));
    assert_eq!(status.history[0].trigger, "rollback");
    // New pushes do not move a pinned app.
    repo.push(&[("app/a.yaml", &config_map("a", "v3"))], "v3");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(config_map_value(&ns, "a").await.as_deref(), Some("v1"));

    patch_app(
        &ns,
        "pin",
        json!({"metadata": {"annotations": {"capstan.dev/pinned-revision": null}}}),
    )
    .await;
    wait_config_map(&ns, "a", "v3", Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_specs_are_refused_at_admission() {
    let ns = namespace("ctl-valid").await;
    let api: kube::Api<capstan_controller::api::Application> =
        kube::Api::namespaced(client().await, ns.name());
    let bad: serde_json::Value = json!({
        "apiVersion": "capstan.dev/v1alpha1", "kind": "Application",
        "metadata": {"name": "escape"},
        "spec": {"sourceRef": {"name": "r"}, "path": "../etc", "destination": {"namespace": "x"}}
    });
    let err = api
        .create(
            &Default::default(),
            &serde_json::from_value(bad).expect("app"),
        )
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("path must not contain '..'"),
        "{err}"
    );
    let repos: kube::Api<capstan_controller::api::GitRepository> =
        kube::Api::namespaced(client().await, ns.name());
    let bad: serde_json::Value = json!({
        "apiVersion": "capstan.dev/v1alpha1", "kind": "GitRepository",
        "metadata": {"name": "two-refs"},
        "spec": {"url": "https://example.com/r.git", "ref": {"branch": "main", "tag": "v1"}}
    });
    let err = repos
        .create(
            &Default::default(),
            &serde_json::from_value(bad).expect("repo"),
        )
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("at most one of branch, tag and semver"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ignored_differences_are_neither_reported_nor_healed() {
    let ns = namespace("ctl-ignore").await;
    let ns = ns.name().to_string();
    let repo = Repo::new(
        "ign",
        &[(
            "app/a.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  key: git\n  other: git\n",
        )],
    );
    let _controller = ControllerSetup::new(&ns).start();
    create_repo(&ns, "ign", &repo.url(), "1m").await;
    let mut spec = app_spec("ign", &ns, true);
    spec["ignoreDifferences"] =
        json!([{"kind": "ConfigMap", "name": "a", "jsonPointers": ["/data/key"]}]);
    create_app(&ns, "ign", spec).await;
    wait_ready(&ns, "ign", "True", Some("Synced"), Duration::from_secs(60)).await;

    patch_config_map(&ns, "a", Some("tuner"), r#"{"data":{"key":"tuned"}}"#);
    // The drift watch wakes the app; the ignored field is neither drift nor healed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(config_map_value(&ns, "a").await.as_deref(), Some("tuned"));
    let app = get_app(&ns, "ign").await;
    let status = app.status.clone().expect("status");
    assert_eq!(status.sync.map(|s| s.status.as_str()), Some("Synced"));
    assert!(status.drift.is_empty(), "{:?}", status.drift);

    // A field that is not ignored is still healed.
    patch_config_map(&ns, "a", Some("tuner"), r#"{"data":{"other":"tuned"}}"#);
    eventually(Duration::from_secs(20), "other healed, key kept", || {
        let ns = ns.clone();
        async move {
            let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
                kube::Api::namespaced(client().await, &ns);
            let data = api
                .get("a")
                .await
                .map_err(|e| e.to_string())?
                .data
                .unwrap_or_default();
            match (
                data.get("other").map(String::as_str),
                data.get("key").map(String::as_str),
            ) {
                (Some("git"), Some("tuned")) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
}
