//! Differential conformance: every case under tests/corpus is rendered by Capstan and by the
//! reference tool, and the canonicalised object sets must be identical.
//! - `plain-*`: `kubectl label --local -R -f app -o json` (kubectl's own YAML reader, no cluster)
//! - `kust-*`: `kubectl kustomize` (Capstan runs the standalone `kustomize` binary)
//! - `helm-*`: `helm template` with the same release, namespace and values
//! - `err-*`: Capstan must fail with an error naming what `expected-error.txt` lists and render nothing.

mod common;

use std::path::Path;
use std::process::Command;

use capstan_render::{HelmOptions, Limits, RenderEngine, RenderOptions};
use common::{corpus, object_set, parse_tool_output, tool, tools};
use serde_json::Value;

fn helm_options(case: &Path) -> HelmOptions {
    let Ok(text) = std::fs::read_to_string(case.join("capstan-test.json")) else {
        return HelmOptions::default();
    };
    let spec: Value = serde_json::from_str(&text).expect("capstan-test.json is JSON");
    let strings = |key: &str| -> Vec<String> {
        spec.get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let string = |key: &str| spec.get(key).and_then(Value::as_str).map(str::to_owned);
    HelmOptions {
        release_name: string("release"),
        namespace: string("namespace"),
        values_files: strings("values_files"),
        values: string("values"),
        kube_version: string("kube_version"),
        api_versions: strings("api_versions"),
    }
}

fn reference(case: &Path, kind: &str, helm: &HelmOptions) -> Vec<Value> {
    let app = case.join("app");
    let mut command = match kind {
        "plain" => {
            let mut c = Command::new(tool("kubectl"));
            c.args(["label", "--local", "-R", "-o", "json", "-f"])
                .arg(&app)
                .arg("capstan-noop-");
            c
        }
        "kust" => {
            let mut c = Command::new(tool("kubectl"));
            c.arg("kustomize").arg(&app);
            c
        }
        "helm" => {
            let mut c = Command::new(tool("helm"));
            c.arg("template")
                .arg(helm.release_name.as_deref().unwrap_or("app"))
                .arg(&app)
                .arg("--include-crds");
            if let Some(ns) = &helm.namespace {
                c.args(["--namespace", ns]);
            }
            for file in &helm.values_files {
                c.arg("--values").arg(app.join(file));
            }
            if let Some(values) = &helm.values {
                let path = std::env::temp_dir().join(format!(
                    "capstan-ref-values-{}-{}.yaml",
                    std::process::id(),
                    case.file_name().expect("case name").to_string_lossy()
                ));
                std::fs::write(&path, values).expect("write reference values");
                c.arg("--values").arg(path);
            }
            if let Some(v) = &helm.kube_version {
                c.args(["--kube-version", v]);
            }
            for api in &helm.api_versions {
                c.args(["--api-versions", api]);
            }
            c
        }
        other => panic!("unknown case kind {other}"),
    };
    let output = command.output().expect("reference tool runs");
    assert!(
        output.status.success(),
        "reference tool failed for {}: {}",
        case.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    parse_tool_output(&output.stdout)
}

#[test]
fn corpus_matches_reference_tools() {
    let engine = RenderEngine::new(tools(), Limits::default());
    let mut cases: Vec<_> = std::fs::read_dir(corpus())
        .expect("corpus exists")
        .map(|e| e.expect("corpus entry").path())
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    let mut compared = 0;
    for case in &cases {
        let name = case
            .file_name()
            .expect("case name")
            .to_string_lossy()
            .into_owned();
        let kind = name.split('-').next().expect("case prefix").to_owned();
        let helm = helm_options(case);
        let options = RenderOptions {
            helm: helm.clone(),
            ..RenderOptions::default()
        };
        let result = engine.render(case, Path::new("app"), &options);
        if kind == "err" {
            let expected = std::fs::read_to_string(case.join("expected-error.txt"))
                .expect("expected-error.txt");
            match result {
                Ok(rendered) => failures.push(format!(
                    "{name}: rendered {} objects, expected an error",
                    rendered.objects.len()
                )),
                Err(error) => {
                    let message = error.to_string();
                    for needle in expected.trim().split('|') {
                        if !message.contains(needle) {
                            failures.push(format!("{name}: error {message:?} lacks {needle:?}"));
                        }
                    }
                }
            }
            continue;
        }
        let rendered = match result {
            Ok(rendered) => rendered,
            Err(error) => {
                failures.push(format!("{name}: capstan failed: {error}"));
                continue;
            }
        };
        let ours = object_set(rendered.objects.iter().map(|o| o.object.clone()));
        let theirs = object_set(reference(case, &kind, &helm));
        assert!(
            !theirs.is_empty(),
            "{name}: the reference rendered nothing; the case tests nothing"
        );
        if ours != theirs {
            failures.push(format!(
                "{name}: object sets differ\n capstan: {}\n reference: {}",
                serde_json::to_string(&ours).unwrap_or_default(),
                serde_json::to_string(&theirs).unwrap_or_default()
            ));
        }
        compared += 1;
    }
    assert!(compared >= 30, "only {compared} differential cases");
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
