//! The inventory store against the real API server: round trips (up to 10,000 objects, sharded past
//! the 1 MiB object limit), concurrent writers, and leftovers of a crashed write.

use capstan_cluster::Cluster;
use capstan_core::ObjectRef;
use capstan_core::ownership::AppId;
use capstan_inventory::{Inventory, InventoryError, InventoryStore};
use capstan_test_support::{TestNamespace, cluster};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use std::collections::BTreeMap;

fn config_maps(namespace: &str, count: usize) -> Inventory {
    (0..count)
        .map(|i| ObjectRef {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some(namespace.into()),
            name: format!("a-rather-long-config-map-name-to-make-lines-realistic-{i:05}"),
        })
        .collect()
}

async fn inventory_config_maps(cluster: &Cluster, namespace: &str) -> Vec<String> {
    let mut names: Vec<String> = cluster
        .list_config_maps(namespace, "capstan.dev/inventory")
        .await
        .expect("list")
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn small_inventory_round_trips_in_one_config_map() {
    let cluster = cluster().await;
    let namespace = TestNamespace::create(&cluster.client(), "inv-small").await;
    let store = InventoryStore::new(cluster.clone(), AppId::new(namespace.name(), "shop"));

    let empty = store.load().await.expect("load");
    assert!(empty.inventory.is_empty() && empty.resource_version.is_none());

    let inventory = config_maps(namespace.name(), 3);
    let saved = store.save(&empty, &inventory).await.expect("save");
    assert_eq!(store.load().await.expect("load").inventory, inventory);
    assert_eq!(
        inventory_config_maps(&cluster, namespace.name()).await,
        vec!["capstan-inventory-shop".to_string()]
    );

    store.save(&saved, &Inventory::new()).await.expect("shrink");
    assert!(store.load().await.expect("load").inventory.is_empty());
    store.delete().await.expect("delete");
    assert!(
        inventory_config_maps(&cluster, namespace.name())
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn ten_thousand_objects_round_trip_through_shards() {
    let cluster = cluster().await;
    let namespace = TestNamespace::create(&cluster.client(), "inv-large").await;
    let store = InventoryStore::new(cluster.clone(), AppId::new(namespace.name(), "big"));

    let large = config_maps(namespace.name(), 10_000);
    // ~0.9 MiB: too close to the 1 MiB object limit for one ConfigMap, so it is sharded.
    assert!(large.encode().len() > 800 * 1024);
    let saved = store
        .save(&store.load().await.expect("load"), &large)
        .await
        .expect("save 10,000");
    let loaded = store.load().await.expect("load");
    assert_eq!(loaded.inventory.len(), 10_000);
    assert_eq!(loaded.inventory, large);
    let names = inventory_config_maps(&cluster, namespace.name()).await;
    assert!(names.len() >= 3, "head plus at least two shards: {names:?}");

    // Shrinking to an inline inventory removes the shards of the old generation.
    let small = config_maps(namespace.name(), 10);
    store.save(&saved, &small).await.expect("shrink");
    assert_eq!(store.load().await.expect("load").inventory, small);
    assert_eq!(
        inventory_config_maps(&cluster, namespace.name()).await,
        vec!["capstan-inventory-big".to_string()]
    );
}

#[tokio::test]
async fn a_second_writer_with_a_stale_read_gets_a_conflict() {
    let cluster = cluster().await;
    let namespace = TestNamespace::create(&cluster.client(), "inv-conflict").await;
    let store = InventoryStore::new(cluster.clone(), AppId::new(namespace.name(), "shop"));
    let first = store
        .save(
            &store.load().await.expect("load"),
            &config_maps(namespace.name(), 1),
        )
        .await
        .expect("initial save");

    let stale = first.clone();
    store
        .save(&first, &config_maps(namespace.name(), 2))
        .await
        .expect("first writer");
    let err = store
        .save(&stale, &config_maps(namespace.name(), 20_000))
        .await
        .expect_err("second writer must not overwrite");
    assert!(matches!(err, InventoryError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains(namespace.name()));

    // The loser's shards are cleaned up and the winner's inventory is intact.
    assert_eq!(store.load().await.expect("load").inventory.len(), 2);
    assert_eq!(
        inventory_config_maps(&cluster, namespace.name()).await,
        vec!["capstan-inventory-shop".to_string()]
    );
}

#[tokio::test]
async fn shards_of_a_crashed_write_are_ignored_then_removed() {
    let cluster = cluster().await;
    let namespace = TestNamespace::create(&cluster.client(), "inv-crash").await;
    let store = InventoryStore::new(cluster.clone(), AppId::new(namespace.name(), "shop"));
    let large = config_maps(namespace.name(), 10_000);
    let first = store
        .save(&store.load().await.expect("load"), &large)
        .await
        .expect("save");

    // A writer that crashed after writing its shards and before switching the head leaves shards of
    // the next generation behind. Readers still see the committed generation.
    for index in 0..2 {
        let leftover = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("capstan-inventory-shop-g2-{index}")),
                labels: Some(BTreeMap::from([
                    ("capstan.dev/inventory".to_string(), "shop".to_string()),
                    (
                        "capstan.dev/inventory-generation".to_string(),
                        "2".to_string(),
                    ),
                ])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "objects".to_string(),
                "v1 ConfigMap elsewhere not-ours\n".to_string(),
            )])),
            ..Default::default()
        };
        cluster
            .create_config_map(namespace.name(), &leftover)
            .await
            .expect("leftover shard");
    }
    assert_eq!(store.load().await.expect("load").inventory, large);

    let shrunk = config_maps(namespace.name(), 5);
    store.save(&first, &shrunk).await.expect("next save");
    assert_eq!(store.load().await.expect("load").inventory, shrunk);
    assert_eq!(
        inventory_config_maps(&cluster, namespace.name()).await,
        vec!["capstan-inventory-shop".to_string()]
    );
}
