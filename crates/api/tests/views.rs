//! The app file and the `Application` CRD are two views of one `AppSpec`: the same fields, written
//! the same way, mean the same thing. Each row sets fields away from their defaults; the two views
//! must produce equal specs (all but the source, which is where they differ by design), and each
//! row must really change the spec, so a field one view drops or renames fails here.

use std::time::Duration;

use capstan_api::AppSpec;
use capstan_api::app_file::AppFile;
use capstan_api::crd::Application;
use capstan_api::spec::{ConflictPolicy, Propagation, Renderer, Source};

/// `spec` fields shared by both views, as YAML indented under `spec:`.
const ROWS: &[(&str, &str)] = &[
    ("renderer", "  render: {renderer: kustomize}\n"),
    ("renderer alias", "  render: {renderer: directory}\n"),
    (
        "include/exclude",
        "  render: {include: ['**/*.yaml'], exclude: ['tests/**']}\n",
    ),
    (
        "helm",
        "  render:\n    helm: {releaseName: web, valuesFiles: [prod.yaml], values: 'replicas: 3'}\n",
    ),
    (
        "jsonnet",
        "  render:\n    renderer: jsonnet\n    jsonnet:\n      main: main.jsonnet\n      jpath: [vendor, lib]\n      extVars: [{name: env, value: prod}]\n      tlas: [{name: n, value: '3', code: true}]\n",
    ),
    ("automated", "  syncPolicy: {automated: true}\n"),
    ("prune", "  syncPolicy: {prune: true}\n"),
    (
        "selfHeal",
        "  syncPolicy: {automated: true, selfHeal: true}\n",
    ),
    ("allowEmpty", "  syncPolicy: {allowEmpty: true}\n"),
    ("interval", "  syncPolicy: {interval: 1h30m}\n"),
    (
        "retry",
        "  syncPolicy:\n    retry: {backoff: 500ms, factor: 3, maxBackoff: 10m}\n",
    ),
    ("conflicts", "  syncPolicy: {conflicts: Fail}\n"),
    (
        "conflicts (app file spelling)",
        "  syncPolicy: {conflicts: fail}\n",
    ),
    ("replace", "  syncPolicy: {replace: true}\n"),
    ("propagation", "  syncPolicy: {propagation: Foreground}\n"),
    (
        "propagation (app file spelling)",
        "  syncPolicy: {propagation: orphan}\n",
    ),
    (
        "healthChecks",
        "  healthChecks:\n    - {group: shop.example.com, kind: Promotion, cel: 'object.status.ready'}\n",
    ),
    (
        "ignoreDifferences",
        "  ignoreDifferences:\n    - {group: apps, kind: Deployment, name: web, namespace: shop, jsonPointers: [/spec/replicas], managers: [hpa]}\n",
    ),
];

fn app_file(fields: &str) -> AppSpec {
    let text = format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: App\nmetadata: {{name: shop}}\nspec:\n  source: {{path: shop}}\n  destination: {{namespace: shop}}\n{fields}"
    );
    AppFile::parse(&text)
        .unwrap_or_else(|e| panic!("app file with\n{fields}: {e}"))
        .app_spec()
}

fn application(fields: &str) -> AppSpec {
    let text = format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Application\nmetadata: {{name: shop, namespace: ops}}\nspec:\n  sourceRef: {{name: shop}}\n  path: shop\n  destination: {{namespace: shop}}\n{fields}"
    );
    serde_saphyr::from_str::<Application>(&text)
        .unwrap_or_else(|e| panic!("Application with\n{fields}: {e}"))
        .spec
        .app_spec()
}

/// Everything but the source.
fn shared(spec: &AppSpec) -> AppSpec {
    AppSpec {
        source: Source::Unset,
        ..spec.clone()
    }
}

#[test]
fn both_views_read_every_shared_field_the_same() {
    let default = shared(&app_file(""));
    assert_eq!(default, shared(&application("")), "defaults agree");
    for (name, fields) in ROWS {
        let from_file = shared(&app_file(fields));
        let from_crd = shared(&application(fields));
        assert_eq!(from_file, from_crd, "{name}");
        assert_ne!(from_file, default, "{name}: the row changes the spec");
    }
}

#[test]
fn the_rows_reach_typed_values() {
    let spec =
        application("  syncPolicy: {interval: 1h30m, conflicts: Fail, propagation: orphan}\n");
    assert_eq!(spec.sync_policy.interval, Duration::from_secs(5400));
    assert_eq!(spec.sync_policy.conflicts, ConflictPolicy::Fail);
    assert_eq!(spec.sync_policy.propagation, Propagation::Orphan);
    let spec = app_file("  render: {renderer: directory}\n");
    assert_eq!(spec.render.renderer, Some(Renderer::Plain));
}

#[test]
fn the_sources_differ_by_design() {
    assert!(matches!(
        application("").source,
        Source::Repository { ref path, .. } if path == "shop"
    ));
    assert!(matches!(
        app_file("").source,
        Source::Directory { ref path } if path == "shop"
    ));
}

#[test]
fn bad_values_are_refused_naming_the_value() {
    for (fields, needle) in [
        ("  syncPolicy: {interval: 5}\n", "\"5\" is not a duration"),
        ("  syncPolicy: {interval: 5d}\n", "\"5d\" is not a duration"),
        ("  syncPolicy: {conflicts: win}\n", "win"),
        ("  render: {renderer: helmfile}\n", "helmfile"),
        ("  syncPolicy: {prunes: true}\n", "prunes"),
    ] {
        let text = format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: App\nmetadata: {{name: shop}}\nspec:\n  source: {{path: shop}}\n  destination: {{namespace: shop}}\n{fields}"
        );
        let err = AppFile::parse(&text).expect_err(fields).to_string();
        assert!(err.contains(needle), "{fields}: {err}");
    }
}
