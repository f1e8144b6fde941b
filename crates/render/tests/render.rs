//! Behaviour of the render stage beyond conformance: provenance, the render cache (counted spawns),
//! confinement of symlinks, limits on files, documents and processes, the scrubbed environment,
//! helm hook mapping, the jsonnet renderer (provenance, cache, confinement, limits) and the CLI output.

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::time::Duration;

use capstan_render::{
    HelmOptions, JsonnetOptions, JsonnetValue, Limits, OutputFormat, Provenance, RenderEngine,
    RenderError, RenderOptions, RendererKind, Tools, detect, format_objects,
};
use common::{copy_tree, corpus, tools};

fn engine() -> RenderEngine {
    RenderEngine::new(tools(), Limits::default())
}

fn provenances(root: &Path, app: &str) -> Vec<(String, Provenance)> {
    engine()
        .render(root, Path::new(app), &RenderOptions::default())
        .expect("renders")
        .objects
        .iter()
        .map(|o| (capstan_render::object_key(&o.object), o.provenance.clone()))
        .collect()
}

fn prov(file: &str, document: usize) -> Provenance {
    Provenance {
        file: PathBuf::from(file),
        document,
    }
}

#[test]
fn plain_provenance_counts_documents_with_content_and_keeps_file_order() {
    let got = provenances(&corpus().join("plain-multidoc"), "app");
    assert_eq!(
        got,
        vec![
            ("/ConfigMap /one".to_owned(), prov("app/all.yaml", 0)),
            ("/ConfigMap /two".to_owned(), prov("app/all.yaml", 1)),
            ("/Service /three".to_owned(), prov("app/all.yaml", 2)),
        ]
    );
    let nested = provenances(&corpus().join("plain-nested"), "app");
    assert_eq!(
        nested
            .iter()
            .map(|(_, p)| p.file.clone())
            .collect::<Vec<_>>(),
        vec![
            PathBuf::from("app/a/b/c/deep.yml"),
            PathBuf::from("app/top.yaml")
        ]
    );
}

#[test]
fn list_items_share_their_lists_provenance() {
    let got = provenances(&corpus().join("plain-list"), "app");
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|(_, p)| *p == prov("app/list.yaml", 0)));
}

#[test]
fn helm_provenance_points_at_the_template_in_the_repository() {
    let root = corpus().join("helm-subchart");
    let got = provenances(&root, "app");
    assert_eq!(
        got,
        vec![
            (
                "/ConfigMap /app-child".to_owned(),
                prov("app/charts/child/templates/cm.yaml", 0)
            ),
            (
                "/ConfigMap /app-parent".to_owned(),
                prov("app/templates/cm.yaml", 0)
            ),
        ]
    );
    let ranged = provenances(&corpus().join("helm-range"), "app");
    assert_eq!(
        ranged.iter().map(|(_, p)| p.document).collect::<Vec<_>>(),
        vec![0, 1, 2],
        "documents of one template are numbered in order"
    );
}

#[test]
fn kustomize_reports_its_version_and_kustomization_as_provenance() {
    let rendered = engine()
        .render(
            &corpus().join("kust-overlay"),
            Path::new("app"),
            &RenderOptions::default(),
        )
        .expect("renders");
    assert_eq!(rendered.renderer, RendererKind::Kustomize);
    let version = rendered.tool_version.clone().expect("kustomize version");
    assert!(version.contains("v5."), "version {version:?}");
    assert!(
        rendered
            .objects
            .iter()
            .all(|o| o.provenance.file == Path::new("app/kustomization.yaml"))
    );
}

#[test]
fn detection_follows_the_marker_files() {
    assert_eq!(
        detect(&corpus().join("kust-overlay/app")),
        RendererKind::Kustomize
    );
    assert_eq!(
        detect(&corpus().join("kust-Kustomization-name/app")),
        RendererKind::Kustomize
    );
    assert_eq!(detect(&corpus().join("helm-basic/app")), RendererKind::Helm);
    assert_eq!(
        detect(&corpus().join("plain-single/app")),
        RendererKind::Plain
    );
    // The override wins: a chart directory read as plain YAML fails on its templates.
    let options = RenderOptions {
        renderer: Some(RendererKind::Plain),
        ..RenderOptions::default()
    };
    assert!(
        engine()
            .render(&corpus().join("helm-basic"), Path::new("app"), &options)
            .is_err()
    );
}

#[test]
fn helm_hooks_are_kept_with_their_annotations() {
    let rendered = engine()
        .render(
            &corpus().join("helm-hooks"),
            Path::new("app"),
            &RenderOptions::default(),
        )
        .expect("renders");
    let find = |name: &str| {
        rendered
            .objects
            .iter()
            .find(|o| o.object.pointer("/metadata/name").and_then(|n| n.as_str()) == Some(name))
            .map(|o| o.object.clone())
            .unwrap_or_else(|| panic!("{name} rendered"))
    };
    // The sync stage maps these (capstan_plan::hooks); render only has to keep them.
    let annotation = |name: &str, key: &str| {
        find(name)
            .pointer(&format!("/metadata/annotations/{}", key.replace('/', "~1")))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    assert_eq!(
        annotation("app-migrate", "helm.sh/hook").as_deref(),
        Some("pre-install,pre-upgrade")
    );
    assert_eq!(
        annotation("app-migrate", "helm.sh/hook-weight").as_deref(),
        Some("-5")
    );
    assert!(annotation("app-migrate", "helm.sh/hook-delete-policy").is_some());
    assert!(annotation("app-test", "helm.sh/hook").is_some_and(|h| h.contains("test")));
    assert_eq!(annotation("app-plain", "helm.sh/hook"), None);
}

#[test]
fn unchanged_inputs_do_not_spawn_the_tool_again() {
    let repo = tempfile::tempdir().expect("tempdir");
    copy_tree(&corpus().join("kust-overlay"), repo.path());
    copy_tree(&corpus().join("helm-basic/app"), &repo.path().join("chart"));
    std::fs::write(repo.path().join("README.md"), "v1").expect("write");
    let engine = engine();
    let options = RenderOptions::default();
    let render_both = |engine: &RenderEngine| {
        engine
            .render(repo.path(), Path::new("app"), &options)
            .expect("kustomize renders");
        engine
            .render(repo.path(), Path::new("chart"), &options)
            .expect("helm renders");
    };
    render_both(&engine);
    let cold = engine.spawn_count();
    assert_eq!(cold, 4, "two version probes and two renders");

    // A new commit that touches nothing these apps read.
    std::fs::write(repo.path().join("README.md"), "v2").expect("write");
    render_both(&engine);
    assert_eq!(
        engine.spawn_count(),
        cold,
        "unchanged apps were rendered again"
    );

    // A change in the overlay's base (outside the app directory) is an input change.
    let service = repo.path().join("base/service.yaml");
    let text = std::fs::read_to_string(&service)
        .expect("read")
        .replace("port: 80,", "port: 81,");
    std::fs::write(&service, text).expect("write");
    render_both(&engine);
    assert_eq!(engine.spawn_count(), cold + 1, "only kustomize runs again");

    // Options are part of the key.
    let namespaced = RenderOptions {
        helm: HelmOptions {
            namespace: Some("other".into()),
            ..HelmOptions::default()
        },
        ..RenderOptions::default()
    };
    engine
        .render(repo.path(), Path::new("chart"), &namespaced)
        .expect("renders");
    assert_eq!(engine.spawn_count(), cold + 2);
}

#[test]
fn a_symlink_leaving_the_repository_is_refused_and_one_inside_is_followed() {
    let repo = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        outside.path().join("secret.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: secret}\n",
    )
    .expect("write");
    let app = repo.path().join("app");
    std::fs::create_dir_all(&app).expect("mkdir");
    std::fs::write(
        repo.path().join("shared.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared}\n",
    )
    .expect("write");
    symlink(repo.path().join("shared.yaml"), app.join("shared.yaml")).expect("symlink");
    let rendered = engine()
        .render(repo.path(), Path::new("app"), &RenderOptions::default())
        .expect("an in-repository symlink is fine");
    assert_eq!(rendered.objects.len(), 1);

    symlink(outside.path().join("secret.yaml"), app.join("leak.yaml")).expect("symlink");
    let error = engine()
        .render(repo.path(), Path::new("app"), &RenderOptions::default())
        .expect_err("escape refused");
    assert!(matches!(error, RenderError::PathEscape { .. }), "{error}");
    assert!(error.to_string().contains("app/leak.yaml"), "{error}");

    // The same escape inside a chart must stop helm before it runs.
    let chart = repo.path().join("chart");
    copy_tree(&corpus().join("helm-basic/app"), &chart);
    symlink(outside.path(), chart.join("templates/linked")).expect("symlink");
    let engine = engine();
    let error = engine
        .render(repo.path(), Path::new("chart"), &RenderOptions::default())
        .expect_err("escape refused");
    assert!(matches!(error, RenderError::PathEscape { .. }), "{error}");
    assert!(engine.spawn_count() <= 1, "only the version probe ran");
}

#[test]
fn an_app_path_outside_the_root_is_refused() {
    let error = engine()
        .render(
            &corpus().join("plain-single"),
            Path::new("../plain-list/app"),
            &RenderOptions::default(),
        )
        .expect_err("refused");
    assert!(
        matches!(&error, RenderError::AppOutsideRoot { path, .. } if path == Path::new("../plain-list/app")),
        "{error}"
    );
}

#[test]
fn a_remote_base_is_refused_with_what_to_do_instead() {
    let repo = tempfile::tempdir().expect("tempdir");
    write(
        &repo.path().join("app/kustomization.yaml"),
        "resources:\n  - https://github.com/example/shop//base?ref=v1.2.0\n",
    );
    let engine = engine();
    let error = engine
        .render(repo.path(), Path::new("app"), &RenderOptions::default())
        .expect_err("remote base refused");
    assert!(
        matches!(&error, RenderError::RemoteBase { path, reference }
            if path == Path::new("app/kustomization.yaml")
                && reference == "https://github.com/example/shop//base?ref=v1.2.0"),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("vendor the base into the repository"),
        "{message}"
    );
    assert!(
        !message.contains("enable"),
        "no option enables them: {message}"
    );
    assert!(engine.spawn_count() <= 1, "only the version probe ran");
}

#[test]
fn file_size_and_document_limits_hold() {
    let limits = Limits {
        max_file_bytes: 50,
        ..Limits::default()
    };
    let error = RenderEngine::new(tools(), limits)
        .render(
            &corpus().join("plain-block-scalars"),
            Path::new("app"),
            &RenderOptions::default(),
        )
        .expect_err("too large");
    assert!(matches!(error, RenderError::FileTooLarge { .. }), "{error}");

    let limits = Limits {
        max_documents: 2,
        ..Limits::default()
    };
    let error = RenderEngine::new(tools(), limits)
        .render(
            &corpus().join("plain-multidoc"),
            Path::new("app"),
            &RenderOptions::default(),
        )
        .expect_err("too many documents");
    assert!(error.to_string().contains("app/all.yaml"), "{error}");
}

/// A stand-in for helm/kustomize: a shell script, so the test controls what the "tool" does.
fn fake_tool(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("fake-tool");
    std::fs::write(
        &path,
        format!("#!/bin/sh\nif [ \"$1\" = version ]; then echo v0.0.0; exit 0; fi\n{body}\n"),
    )
    .expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn render_with_fake_kustomize(
    body: &str,
    limits: Limits,
) -> (Result<(), RenderError>, tempfile::TempDir) {
    let bin = tempfile::tempdir().expect("tempdir");
    let tool = fake_tool(bin.path(), body);
    let engine = RenderEngine::new(
        Tools {
            kustomize: Some(tool),
            ..Tools::default()
        },
        limits,
    );
    let result = engine
        .render(
            &corpus().join("kust-overlay"),
            Path::new("app"),
            &RenderOptions::default(),
        )
        .map(|_| ());
    (result, bin)
}

#[test]
fn a_tool_that_hangs_is_killed_at_the_timeout() {
    let limits = Limits {
        process_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let started = std::time::Instant::now();
    let (result, _bin) = render_with_fake_kustomize("exec /bin/sleep 30", limits);
    let error = result.expect_err("timed out");
    assert!(matches!(error, RenderError::ToolTimeout { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn a_tool_that_floods_stdout_is_stopped_at_the_output_limit() {
    let limits = Limits {
        max_output_bytes: 100_000,
        ..Limits::default()
    };
    let (result, _bin) = render_with_fake_kustomize("exec /usr/bin/yes", limits);
    let error = result.expect_err("output cap");
    assert!(
        matches!(error, RenderError::ToolOutputTooLarge { .. }),
        "{error}"
    );
}

#[test]
fn tools_run_with_a_scrubbed_environment() {
    // The fake tool fails and prints its environment (as its error output); only the variables the
    // renderer sets (and the PWD that sh adds) may appear.
    let (result, _bin) = render_with_fake_kustomize("/usr/bin/env >&2; exit 3", Limits::default());
    let error = result.expect_err("fake tool fails").to_string();
    let mut names: Vec<&str> = error
        .lines()
        .filter_map(|line| {
            line.split_once('=')
                .map(|(name, _)| name.rsplit(' ').next().unwrap_or(name))
        })
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names, vec!["HOME", "PATH", "PWD"], "{error}");
    assert!(error.contains("PATH=/nonexistent"), "{error}");
}

#[test]
fn a_missing_tool_is_a_clear_error() {
    let engine = RenderEngine::new(Tools::default(), Limits::default());
    let error = engine
        .render(
            &corpus().join("helm-basic"),
            Path::new("app"),
            &RenderOptions::default(),
        )
        .expect_err("no helm");
    assert!(error.to_string().contains("CAPSTAN_HELM"), "{error}");
}

#[test]
fn the_yaml_stream_output_reads_back_to_the_same_objects() {
    let rendered = engine()
        .render(
            &corpus().join("plain-yaml11"),
            Path::new("app"),
            &RenderOptions::default(),
        )
        .expect("renders");
    let text = format_objects(&rendered, OutputFormat::Yaml);
    assert!(
        text.starts_with("---\n# Source: app/widget.yaml (document 0)\n"),
        "{text}"
    );
    let again = capstan_render::yaml::parse_stream(&text, Path::new("out"), &Limits::default())
        .expect("parses");
    assert_eq!(
        again.iter().map(|o| o.object.clone()).collect::<Vec<_>>(),
        rendered
            .objects
            .iter()
            .map(|o| o.object.clone())
            .collect::<Vec<_>>()
    );
    let json: serde_json::Value =
        serde_json::from_str(&format_objects(&rendered, OutputFormat::Json)).expect("json output");
    assert_eq!(json["kind"], "List");
    assert_eq!(json["items"][0]["spec"]["octal"], 493);
}

fn jsonnet() -> RenderOptions {
    RenderOptions {
        renderer: Some(RendererKind::Jsonnet),
        ..RenderOptions::default()
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[test]
fn jsonnet_provenance_is_the_entry_file_and_the_output_index() {
    let rendered = engine()
        .render(
            &corpus().join("jsonnet-multi-entry"),
            Path::new("app"),
            &jsonnet(),
        )
        .expect("renders");
    assert_eq!(rendered.renderer, RendererKind::Jsonnet);
    assert_eq!(
        rendered.tool_version.as_deref(),
        Some(capstan_render::jsonnet::EVALUATOR)
    );
    let got: Vec<(String, Provenance)> = rendered
        .objects
        .iter()
        .map(|o| (capstan_render::object_key(&o.object), o.provenance.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "/Namespace /multi".to_owned(),
                prov("app/a-namespace.jsonnet", 0)
            ),
            (
                "/ServiceAccount multi/runner".to_owned(),
                prov("app/b-workloads.jsonnet", 0)
            ),
            (
                "/ConfigMap multi/runner".to_owned(),
                prov("app/b-workloads.jsonnet", 1)
            ),
        ]
    );
    // Jsonnet is never detected: a directory of .jsonnet files is plain unless the app says so.
    assert_eq!(
        detect(&corpus().join("jsonnet-multi-entry/app")),
        RendererKind::Plain
    );
}

#[test]
fn jsonnet_renders_again_only_when_a_file_it_read_changes() {
    let repo = tempfile::tempdir().expect("tempdir");
    copy_tree(&corpus().join("jsonnet-jpath"), repo.path());
    let engine = engine();
    let mut options = jsonnet();
    options.jsonnet.jpath = vec!["vendor".into(), "overrides".into()];
    // `data.ns` is the namespace main.jsonnet imports through the library directories.
    let namespace = |engine: &RenderEngine, options: &RenderOptions| {
        engine
            .render(repo.path(), Path::new("app"), options)
            .expect("renders")
            .objects[0]
            .object["data"]["ns"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(namespace(&engine, &options), "from-overrides");
    assert_eq!(engine.jsonnet_evaluations(), 1);
    // A new commit touching files the evaluation never read: no evaluation.
    write(&repo.path().join("app/README.md"), "docs");
    write(&repo.path().join("vendor/k/unused.libsonnet"), "{}");
    assert_eq!(namespace(&engine, &options), "from-overrides");
    assert_eq!(engine.jsonnet_evaluations(), 1);
    // A library it read changed.
    write(
        &repo.path().join("overrides/k/config.libsonnet"),
        "(import '../../vendor/k/config.libsonnet') + { namespace: 'changed' }",
    );
    assert_eq!(namespace(&engine, &options), "changed");
    assert_eq!(engine.jsonnet_evaluations(), 2);
    // A file appears where an import was looked up first and not found: it now shadows the library.
    write(
        &repo.path().join("app/k/config.libsonnet"),
        "{ namespace: 'shadowed', replicas: 2 }",
    );
    assert_eq!(namespace(&engine, &options), "shadowed");
    assert_eq!(engine.jsonnet_evaluations(), 3);
    // Other options are another render.
    options
        .jsonnet
        .ext_vars
        .insert("unused".into(), JsonnetValue::String("x".into()));
    assert_eq!(namespace(&engine, &options), "shadowed");
    assert_eq!(engine.jsonnet_evaluations(), 4);
    // The same content checked out in another directory (a new commit's checkout) is a cache hit.
    let checkout = tempfile::tempdir().expect("tempdir");
    copy_tree(repo.path(), checkout.path());
    let rendered = engine
        .render(checkout.path(), Path::new("app"), &options)
        .expect("renders");
    assert_eq!(rendered.objects[0].object["data"]["ns"], "shadowed");
    assert_eq!(engine.jsonnet_evaluations(), 4);
    // Nothing here ever spawns a process.
    assert_eq!(engine.spawn_count(), 0);
}

#[test]
fn jsonnet_symlinks_leaving_the_repository_are_refused() {
    let outside = tempfile::tempdir().expect("tempdir");
    write(
        &outside.path().join("secret.libsonnet"),
        "{ token: 'hunter2' }",
    );
    let repo = tempfile::tempdir().expect("tempdir");
    let app = repo.path().join("app");
    write(
        &app.join("main.jsonnet"),
        "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, data: (import 'lib/secret.libsonnet') }",
    );
    std::fs::create_dir_all(app.join("lib")).expect("mkdir");
    symlink(
        outside.path().join("secret.libsonnet"),
        app.join("lib/secret.libsonnet"),
    )
    .expect("symlink");
    let error = engine()
        .render(repo.path(), Path::new("app"), &jsonnet())
        .expect_err("import through a symlink leaving the root");
    let message = error.to_string();
    assert!(
        message.contains("app/main.jsonnet:1")
            && message.contains("symlink resolves outside the repository root"),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");

    // A symlinked library directory leaving the root.
    std::fs::remove_file(app.join("lib/secret.libsonnet")).expect("rm");
    symlink(outside.path(), repo.path().join("vendor")).expect("symlink");
    let mut options = jsonnet();
    options.jsonnet.jpath = vec!["vendor".into()];
    let error = engine()
        .render(repo.path(), Path::new("app"), &options)
        .expect_err("jpath through a symlink");
    assert!(matches!(error, RenderError::PathEscape { .. }), "{error}");

    // An entry file that is a symlink leaving the root.
    std::fs::remove_file(app.join("main.jsonnet")).expect("rm");
    write(
        &outside.path().join("main.jsonnet"),
        "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } }",
    );
    symlink(
        outside.path().join("main.jsonnet"),
        app.join("main.jsonnet"),
    )
    .expect("symlink");
    let error = engine()
        .render(repo.path(), Path::new("app"), &jsonnet())
        .expect_err("entry through a symlink");
    assert!(matches!(error, RenderError::PathEscape { .. }), "{error}");

    // A symlink inside the repository is followed.
    std::fs::remove_file(app.join("main.jsonnet")).expect("rm");
    write(
        &repo.path().join("shared/main.jsonnet"),
        "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'inside' } }",
    );
    symlink(
        repo.path().join("shared/main.jsonnet"),
        app.join("main.jsonnet"),
    )
    .expect("symlink");
    let rendered = engine()
        .render(repo.path(), Path::new("app"), &jsonnet())
        .expect("a symlink inside the root");
    assert_eq!(rendered.objects[0].object["metadata"]["name"], "inside");
}

#[test]
fn jsonnet_snippet_imports_are_confined_too() {
    let repo = tempfile::tempdir().expect("tempdir");
    write(
        &repo.path().join("app/main.jsonnet"),
        "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, data: { v: std.extVar('v') } }",
    );
    let mut options = jsonnet();
    options.jsonnet.ext_vars.insert(
        "v".into(),
        JsonnetValue::Code("importstr '../../../../../../etc/hostname'".into()),
    );
    let error = engine()
        .render(repo.path(), Path::new("app"), &options)
        .expect_err("ext code importing outside");
    assert!(
        error.to_string().contains("escapes the repository root"),
        "{error}"
    );
}

#[test]
fn jsonnet_limits_hold() {
    let repo = tempfile::tempdir().expect("tempdir");
    let main = repo.path().join("app/main.jsonnet");
    let cm = |data: &str| {
        format!(
            "{{ apiVersion: 'v1', kind: 'ConfigMap', metadata: {{ name: 'x' }}, data: {data} }}"
        )
    };

    // Recursion deeper than the stack limit.
    write(
        &main,
        &format!(
            "local f(n) = if n == 0 then 0 else 1 + f(n - 1);\n{}",
            cm("{ n: std.toString(f(5000)) }")
        ),
    );
    let error = engine()
        .render(repo.path(), Path::new("app"), &jsonnet())
        .expect_err("stack overflow");
    assert!(
        error.to_string().contains("stack overflow")
            && error.to_string().contains("app/main.jsonnet:1"),
        "{error}"
    );

    // Output over the size limit.
    write(
        &main,
        &cm("{ big: std.join('', ['x' for i in std.range(1, 100000)]) }"),
    );
    let limits = Limits {
        max_output_bytes: 10_000,
        ..Limits::default()
    };
    let error = RenderEngine::new(tools(), limits)
        .render(repo.path(), Path::new("app"), &jsonnet())
        .expect_err("too large");
    assert!(
        matches!(error, RenderError::ToolOutputTooLarge { .. }),
        "{error}"
    );

    // Evaluation time: the render fails at the deadline.
    write(
        &main,
        &cm("{ n: std.toString(std.foldl(function(a, b) a + b, std.range(1, 50000000), 0)) }"),
    );
    let limits = Limits {
        process_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let start = std::time::Instant::now();
    let error = RenderEngine::new(tools(), limits)
        .render(repo.path(), Path::new("app"), &jsonnet())
        .expect_err("timeout");
    assert!(matches!(error, RenderError::ToolTimeout { .. }), "{error}");
    assert!(start.elapsed() < Duration::from_secs(5));

    // Files read by imports obey the file-size limit.
    write(&repo.path().join("app/big.txt"), &"y".repeat(1000));
    write(&main, &cm("{ big: importstr 'big.txt' }"));
    let limits = Limits {
        max_file_bytes: 500,
        ..Limits::default()
    };
    let error = RenderEngine::new(tools(), limits)
        .render(repo.path(), Path::new("app"), &jsonnet())
        .expect_err("import too large");
    assert!(
        error.to_string().contains("over the limit of 500"),
        "{error}"
    );
}

#[test]
fn jsonnet_main_option_and_missing_entries() {
    let mut options = jsonnet();
    options.jsonnet = JsonnetOptions {
        main: Some("dev.jsonnet".into()),
        ..JsonnetOptions::default()
    };
    let rendered = engine()
        .render(&corpus().join("jsonnet-main"), Path::new("app"), &options)
        .expect("renders");
    assert_eq!(rendered.objects.len(), 1);
    assert_eq!(rendered.objects[0].object["metadata"]["name"], "dev-config");
    assert_eq!(rendered.objects[0].provenance, prov("app/dev.jsonnet", 0));

    let error = engine()
        .render(&corpus().join("plain-single"), Path::new("app"), &jsonnet())
        .expect_err("no entry file");
    assert!(matches!(error, RenderError::Detection { .. }), "{error}");
    assert!(error.to_string().contains("no *.jsonnet file"), "{error}");
}

#[test]
fn jsonnet_importbin_reads_bytes_and_is_confined() {
    let repo = tempfile::tempdir().expect("tempdir");
    write(&repo.path().join("app/data.txt"), "capstan");
    write(
        &repo.path().join("app/main.jsonnet"),
        "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, data: { bin: std.base64(importbin 'data.txt'), str: std.base64(importstr 'data.txt') } }",
    );
    let rendered = engine()
        .render(repo.path(), Path::new("app"), &jsonnet())
        .expect("renders");
    let data = &rendered.objects[0].object["data"];
    assert_eq!(data["bin"], "Y2Fwc3Rhbg==");
    assert_eq!(data["bin"], data["str"]);

    write(
        &repo.path().join("app/main.jsonnet"),
        "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, binaryData: { b: std.base64(importbin '../../x') } }",
    );
    let error = engine()
        .render(repo.path(), Path::new("app"), &jsonnet())
        .expect_err("importbin leaving the root");
    assert!(
        error.to_string().contains("app/main.jsonnet:1")
            && error.to_string().contains("escapes the repository root"),
        "{error}"
    );
}
