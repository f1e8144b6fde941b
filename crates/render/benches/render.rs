//! Render benchmarks, each against its baseline in the same run (ratios, not absolute times):
//! 1. a 10,000-document plain directory: Capstan's plain renderer vs `kubectl kustomize` of the same
//!    files listed in a kustomization;
//! 2. a 100-app kustomize monorepo: a cold render of every app vs rendering every app again after a
//!    commit that touches one app (the cache must leave one tool spawn);
//! 3. a Jsonnet app generating 1,000 Deployments by a comprehension over an imported library:
//!    Capstan's in-process render (jrsonnet, cold: a new engine each run) vs the C++ `jsonnet` CLI
//!    on the same files, and a cache hit after a commit that does not touch the app.
//!
//! Run: `cargo bench -p capstan-render --bench render [-- plain|monorepo|jsonnet]` with kubectl,
//! kustomize and jsonnet on PATH (or CAPSTAN_KUBECTL / CAPSTAN_KUSTOMIZE / CAPSTAN_JSONNET). A name
//! runs that part only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use capstan_render::{Limits, RenderEngine, RenderOptions, RendererKind, Tools};

fn find(name: &str) -> PathBuf {
    let var = format!("CAPSTAN_{}", name.to_uppercase());
    std::env::var_os(&var)
        .map(PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{name} not found: put it on PATH or set {var} (testenv/tools, testenv/build)")
        })
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let value = f();
        best = best.min(start.elapsed());
        last = Some(value);
    }
    (best, last.expect("at least one run"))
}

fn deployment(app: usize, index: usize) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app{app}-d{index}\n  labels: {{app: a{app}, tier: \"backend\"}}\n  annotations: {{note: \"yes\"}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: a{app}-{index}}}}}\n  template:\n    metadata: {{labels: {{app: a{app}-{index}}}}}\n    spec:\n      containers:\n      - name: main\n        image: nginx:1.25\n        args: [--port=8080, --verbose]\n        ports: [{{containerPort: 8080}}]\n        resources: {{limits: {{cpu: 100m, memory: 64Mi}}}}\n"
    )
}

fn plain_directory(dir: &Path) {
    let app = dir.join("app");
    std::fs::create_dir_all(&app).expect("mkdir");
    let mut resources = Vec::new();
    for file in 0..1_000 {
        let text: Vec<String> = (0..10).map(|doc| deployment(file, doc)).collect();
        let name = format!("f{file:04}.yaml");
        std::fs::write(app.join(&name), text.join("---\n")).expect("write");
        resources.push(name);
    }
    // The baseline reads the same files through a kustomization kept beside them (not in the app dir,
    // so Capstan's plain walk does not see it).
    let baseline = dir.join("baseline");
    std::fs::create_dir_all(&baseline).expect("mkdir");
    for name in &resources {
        std::fs::hard_link(app.join(name), baseline.join(name)).expect("link");
    }
    std::fs::write(
        baseline.join("kustomization.yaml"),
        format!("resources: [{}]\n", resources.join(", ")),
    )
    .expect("write");
}

fn monorepo(dir: &Path, apps: usize) {
    for app in 0..apps {
        let app_dir = dir.join(format!("apps/app{app:03}"));
        std::fs::create_dir_all(&app_dir).expect("mkdir");
        let docs: Vec<String> = (0..5).map(|doc| deployment(app, doc)).collect();
        std::fs::write(app_dir.join("deployments.yaml"), docs.join("---\n")).expect("write");
        std::fs::write(
            app_dir.join("kustomization.yaml"),
            format!("resources: [deployments.yaml]\nnamespace: team{app}\nimages: [{{name: nginx, newTag: \"1.27\"}}]\n"),
        )
        .expect("write");
    }
}

fn jsonnet_app(dir: &Path) {
    let app = dir.join("app");
    std::fs::create_dir_all(dir.join("lib")).expect("mkdir");
    std::fs::create_dir_all(&app).expect("mkdir");
    std::fs::write(
        dir.join("lib/k.libsonnet"),
        r#"{
  deployment(name, i):: {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: name, labels: { app: name, tier: if i % 2 == 0 then 'web' else 'worker' } },
    spec: {
      replicas: 1 + i % 3,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [{
            name: 'main',
            image: std.format('example/%s:%d.%d', [name, i % 7, i % 11]),
            args: ['--port=8080', '--id=' + i],
            env: [{ name: 'INDEX', value: std.toString(i) }],
            resources: { limits: { cpu: '100m', memory: '64Mi' } },
          }],
        },
      },
    },
  },
}
"#,
    )
    .expect("write");
    std::fs::write(
        app.join("main.jsonnet"),
        "local k = import 'k.libsonnet';
local deployments = { ['app-%04d' % i]: k.deployment('app-%04d' % i, i) for i in std.range(0, 999) };
std.objectValues(deployments)
",
    )
    .expect("write");
}

fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let run = |part: &str| only.as_deref().is_none_or(|o| o == part);
    let work = tempfile::tempdir().expect("tempdir");
    if run("plain") {
        plain(work.path());
    }
    if run("monorepo") {
        monorepo_commit(work.path());
    }
    if run("jsonnet") {
        jsonnet(work.path());
    }
}

fn jsonnet(work: &Path) {
    let jsonnet = find("jsonnet");
    let repo = work.join("jsonnet");
    jsonnet_app(&repo);
    let mut options = RenderOptions {
        renderer: Some(RendererKind::Jsonnet),
        ..RenderOptions::default()
    };
    options.jsonnet.jpath = vec!["lib".into()];
    let (capstan_time, rendered) = best_of(5, || {
        RenderEngine::new(Tools::default(), Limits::default())
            .render(&repo, Path::new("app"), &options)
            .expect("jsonnet render")
    });
    assert_eq!(rendered.objects.len(), 1_000);
    let (cli_time, output) = best_of(5, || {
        Command::new(&jsonnet)
            .arg("-J")
            .arg(repo.join("lib"))
            .arg(repo.join("app/main.jsonnet"))
            .output()
            .expect("jsonnet runs")
    });
    assert!(output.status.success(), "jsonnet failed");
    let reference: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("jsonnet prints JSON");
    let ours: Vec<serde_json::Value> = rendered.objects.iter().map(|o| o.object.clone()).collect();
    assert_eq!(
        serde_json::Value::Array(ours),
        reference,
        "capstan and jsonnet disagree"
    );
    // A commit that does not touch the app: the recorded inputs are re-hashed, nothing evaluated.
    let engine = RenderEngine::new(Tools::default(), Limits::default());
    engine
        .render(&repo, Path::new("app"), &options)
        .expect("jsonnet render");
    std::fs::write(repo.join("README.md"), "unrelated").expect("write");
    let (hit_time, _) = best_of(5, || {
        engine
            .render(&repo, Path::new("app"), &options)
            .expect("jsonnet render")
    });
    assert_eq!(engine.jsonnet_evaluations(), 1, "the cache must hit");
    println!(
        "jsonnet 1,000 objects: capstan (jrsonnet, in-process) {:.1} ms, jsonnet CLI (C++ v0.18) {:.1} ms, ratio {:.1}x faster; unchanged-input re-render {:.2} ms",
        capstan_time.as_secs_f64() * 1e3,
        cli_time.as_secs_f64() * 1e3,
        cli_time.as_secs_f64() / capstan_time.as_secs_f64(),
        hit_time.as_secs_f64() * 1e3
    );
}

fn plain(work: &Path) {
    let kubectl = find("kubectl");
    // 1. 10,000 plain documents.
    plain_directory(work);
    let engine = RenderEngine::new(Tools::default(), Limits::default());
    let (capstan_time, rendered) = best_of(3, || {
        engine
            .render(work, Path::new("app"), &RenderOptions::default())
            .expect("plain render")
    });
    // One baseline run: kubectl kustomize needs minutes for 10,000 documents.
    let (kubectl_time, output) = best_of(1, || {
        Command::new(&kubectl)
            .arg("kustomize")
            .arg(work.join("baseline"))
            .output()
            .expect("kubectl kustomize runs")
    });
    assert!(output.status.success(), "kubectl kustomize failed");
    assert_eq!(rendered.objects.len(), 10_000);
    println!(
        "plain 10,000 documents: capstan {:.1} ms, kubectl kustomize {:.1} ms, ratio {:.1}x faster (goal >= 5x)",
        capstan_time.as_secs_f64() * 1e3,
        kubectl_time.as_secs_f64() * 1e3,
        kubectl_time.as_secs_f64() / capstan_time.as_secs_f64()
    );
}

fn monorepo_commit(work: &Path) {
    let kustomize = find("kustomize");
    // 2. A 100-app monorepo commit touching one app.
    let repo = work.join("mono");
    monorepo(&repo, 100);
    let engine = RenderEngine::new(
        Tools {
            kustomize: Some(kustomize),
            ..Tools::default()
        },
        Limits::default(),
    );
    let render_all = |engine: &RenderEngine| {
        for app in 0..100 {
            engine
                .render(
                    &repo,
                    Path::new(&format!("apps/app{app:03}")),
                    &RenderOptions::default(),
                )
                .expect("kustomize render");
        }
    };
    let start = Instant::now();
    render_all(&engine);
    let cold = start.elapsed();
    let cold_spawns = engine.spawn_count();
    let touched = repo.join("apps/app042/deployments.yaml");
    let text = std::fs::read_to_string(&touched)
        .expect("read")
        .replace("replicas: 2", "replicas: 3");
    std::fs::write(&touched, text).expect("write");
    let start = Instant::now();
    render_all(&engine);
    let warm = start.elapsed();
    let warm_spawns = engine.spawn_count() - cold_spawns;
    println!(
        "monorepo 100 apps: cold {:.0} ms ({cold_spawns} spawns incl. 1 version probe), commit touching one app {:.1} ms ({warm_spawns} spawn), {:.1}% of cold (goal: 1 spawn, <= 5%)",
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3,
        100.0 * warm.as_secs_f64() / cold.as_secs_f64()
    );
    assert_eq!(warm_spawns, 1, "the commit must spawn kustomize once");
}
