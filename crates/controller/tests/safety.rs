//! The controller's safety rules on the real control plane: only the leader writes, a controller
//! killed mid-sync converges after restart without orphans or wrong prunes, and an app confined to a
//! service account cannot do more than that account may.

mod common;

use std::time::Duration;

use capstan_controller::LeaderElection;
use capstan_test_support::eventually;
use common::*;
use serde_json::json;

fn many_config_maps(prefix: &str, count: usize, value: &str) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            (
                format!("app/{prefix}-{i}.yaml"),
                config_map(&format!("{prefix}-{i}"), value),
            )
        })
        .collect()
}

async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let body = reqwest_get(addr, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn reqwest_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Not listening yet (the controller binds after connecting to the cluster) reads as "down".
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return "connection refused".into();
    };
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).await.expect("response");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_leader_writes_and_a_standby_takes_over() {
    let ns = namespace("ctl-leader").await;
    let ns = ns.name().to_string();
    let repo = Repo::new("lead", &[("app/a.yaml", &config_map("a", "one"))]);
    let election = LeaderElection {
        namespace: ns.clone(),
        lease_name: "capstan-controller".into(),
        lease_duration: Duration::from_secs(3),
    };
    let start = |identity: &str| {
        let mut setup = ControllerSetup::new(&ns);
        setup.leader = Some(election.clone());
        setup.identity = identity.into();
        setup.listen = true;
        setup.start()
    };
    let first = start("replica-1");
    // Give the first replica the lease before the second starts.
    eventually(Duration::from_secs(20), "replica-1 leads", || async {
        match reqwest_get(first.addr.expect("addr"), "/readyz")
            .await
            .contains("200 OK")
        {
            true => Ok(()),
            false => Err("not ready".to_string()),
        }
    })
    .await;
    let second = start("replica-2");
    create_repo(&ns, "lead", &repo.url(), "1s").await;
    create_app(
        &ns,
        "lead",
        json!({
            "sourceRef": {"name": "lead"}, "path": "app", "destination": {"namespace": ns},
            "syncPolicy": {"automated": true, "prune": true}
        }),
    )
    .await;
    wait_ready(&ns, "lead", "True", Some("Synced"), Duration::from_secs(60)).await;
    repo.push(&[("app/a.yaml", &config_map("a", "two"))], "two");
    wait_config_map(&ns, "a", "two", Duration::from_secs(30)).await;
    let (leader, standby) = (first.addr.expect("addr"), second.addr.expect("addr"));
    assert_eq!(metric(leader, "capstan_leader").await, 1.0);
    assert_eq!(metric(standby, "capstan_leader").await, 0.0);
    assert!(metric(leader, "capstan_reconciles_total").await >= 1.0);
    assert_eq!(
        metric(standby, "capstan_reconciles_total").await,
        0.0,
        "the standby reconciled"
    );
    assert_eq!(
        metric(standby, "capstan_api_requests_total{verb=\"patch\"}").await,
        0.0,
        "the standby sent a patch"
    );
    assert!(!reqwest_get(standby, "/readyz").await.contains("200 OK"));
    assert!(reqwest_get(standby, "/healthz").await.contains("200 OK"));

    // The leader goes away (graceful stop releases the lease): the standby takes over and syncs.
    first.stop().await.expect("graceful stop");
    eventually(Duration::from_secs(30), "replica-2 leads", || async {
        match metric(standby, "capstan_leader").await {
            1.0 => Ok(()),
            other => Err(format!("leader={other}")),
        }
    })
    .await;
    repo.push(&[("app/a.yaml", &config_map("a", "three"))], "three");
    wait_config_map(&ns, "a", "three", Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_mid_sync_converges_without_orphans_or_wrong_prunes() {
    let ns = namespace("ctl-kill").await;
    let ns = ns.name().to_string();
    let first: Vec<(String, String)> = many_config_maps("old", 40, "v1");
    let files: Vec<(&str, &str)> = first
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let repo = Repo::new("kill", &files);
    // A foreign object with a name Git also uses later must never be pruned.
    let out = kubectl()
        .args([
            "-n",
            &ns,
            "create",
            "configmap",
            "foreign",
            "--from-literal=key=mine",
        ])
        .output()
        .expect("kubectl");
    assert!(out.status.success());
    create_repo(&ns, "kill", &repo.url(), "1s").await;
    create_app(
        &ns,
        "kill",
        json!({
            "sourceRef": {"name": "kill"}, "path": "app", "destination": {"namespace": ns},
            "syncPolicy": {"automated": true, "prune": true}
        }),
    )
    .await;
    let controller = ControllerSetup::new(&ns).start();
    wait_ready(&ns, "kill", "True", Some("Synced"), Duration::from_secs(90)).await;
    controller.stop().await.expect("stop");

    // The next commit replaces all 40 objects with 40 others: a sync that creates and prunes a lot.
    // Kill the controller at several points of it, restart, and check the end state each time.
    let mut generation = 1;
    for kill_after_ms in [150_u64, 400, 900] {
        generation += 1;
        let mut files: Vec<(String, String)> = many_config_maps(&format!("g{generation}"), 40, "v");
        for (path, _) in many_config_maps(&format!("g{}", generation - 1), 40, "") {
            files.push((path, String::new()));
        }
        for (path, _) in many_config_maps("old", 40, "") {
            files.push((path, String::new()));
        }
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        repo.push(&refs, &format!("generation {generation}"));
        let controller = ControllerSetup::new(&ns).start();
        tokio::time::sleep(Duration::from_millis(kill_after_ms)).await;
        controller.kill();

        let restarted = ControllerSetup::new(&ns).start();
        let expected: Vec<String> = (0..40).map(|i| format!("g{generation}-{i}")).collect();
        eventually(Duration::from_secs(90), "converged after the kill", || {
            let (ns, expected) = (ns.clone(), expected.clone());
            async move {
                let names = config_map_names(&ns).await;
                let owned: Vec<&String> = names
                    .iter()
                    .filter(|n| {
                        !matches!(n.as_str(), "foreign" | "kube-root-ca.crt")
                            && !n.starts_with("capstan-inventory")
                    })
                    .collect();
                let ok =
                    owned.len() == expected.len() && expected.iter().all(|e| names.contains(e));
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "{} objects: {:?}",
                        owned.len(),
                        &owned[..owned.len().min(5)]
                    ))
                }
            }
        })
        .await;
        wait_ready(&ns, "kill", "True", Some("Synced"), Duration::from_secs(30)).await;
        assert_eq!(
            config_map_value(&ns, "foreign").await.as_deref(),
            Some("mine"),
            "foreign object pruned"
        );
        let app = get_app(&ns, "kill").await;
        assert_eq!(
            app.status.and_then(|s| s.inventory).map(|i| i.objects),
            Some(40),
            "inventory exact"
        );
        restarted.stop().await.expect("stop");
    }
}

async fn config_map_names(ns: &str) -> Vec<String> {
    let api: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client().await, ns);
    api.list(&Default::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|cm| cm.metadata.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_account_without_cluster_rights_cannot_create_a_cluster_role() {
    let ns = namespace("ctl-rbac").await;
    let ns = ns.name().to_string();
    let cluster_role = format!("{ns}-escalate");
    let repo = Repo::new(
        "tenant",
        &[
            ("app/cm.yaml", &config_map("allowed", "granted")),
            (
                "app/role.yaml",
                &format!(
                    "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {cluster_role}\nrules: []\n"
                ),
            ),
        ],
    );
    // The tenant's account may manage everything in its namespace, nothing cluster-wide.
    for args in [
        vec!["create", "serviceaccount", "deployer"],
        vec![
            "create",
            "rolebinding",
            "deployer-admin",
            "--clusterrole=admin",
            &format!("--serviceaccount={ns}:deployer"),
        ],
    ] {
        let out = kubectl()
            .args(["-n", &ns])
            .args(&args)
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let _controller = ControllerSetup::new(&ns).start();
    create_repo(&ns, "tenant", &repo.url(), "2s").await;
    create_app(
        &ns,
        "tenant",
        json!({
            "sourceRef": {"name": "tenant"}, "path": "app", "destination": {"namespace": ns},
            "serviceAccountName": "deployer",
            "syncPolicy": {"automated": true}
        }),
    )
    .await;
    let app = wait_ready(
        &ns,
        "tenant",
        "False",
        Some("Forbidden"),
        Duration::from_secs(60),
    )
    .await;
    let (stalled, _, _) = condition(&app, "Stalled").expect("Stalled");
    assert_eq!(stalled, "True");
    let message = condition(&app, "Ready").expect("Ready").2;
    assert!(
        message.contains("clusterroles")
            && message.contains(&format!("system:serviceaccount:{ns}:deployer")),
        "{message}"
    );
    let out = kubectl()
        .args(["get", "clusterrole", &cluster_role])
        .output()
        .expect("kubectl");
    assert!(!out.status.success(), "the ClusterRole must not exist");
    assert_eq!(
        config_map_value(&ns, "allowed").await,
        None,
        "nothing applied from a refused plan"
    );

    // Without the ClusterRole, the same account syncs its namespace fine.
    repo.push(&[("app/role.yaml", "")], "namespace only");
    wait_ready(
        &ns,
        "tenant",
        "True",
        Some("Synced"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        config_map_value(&ns, "allowed").await.as_deref(),
        Some("granted")
    );
}
