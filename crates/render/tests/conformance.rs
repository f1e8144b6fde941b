//! Differential conformance: every case under tests/corpus is rendered by Capstan and by the
//! reference tool, and the canonicalised object sets must be identical.
//! - `plain-*`: `kubectl label --local -R -f app -o json` (kubectl's own YAML reader, no cluster)
//! - `kust-*`: `kubectl kustomize` (Capstan runs the standalone `kustomize` binary)
//! - `helm-*`: `helm template` with the same release, namespace and values
//! - `jsonnet-*`: the C++ `jsonnet` CLI on each entry file (run in the app directory, with the same
//!   `-J`, `--ext-*` and `--tla-*`), its output read as Argo CD reads it (arrays flattened)
//! - `err-*`: Capstan must fail with an error naming what `expected-error.txt` lists and render nothing
//!   (`err-jsonnet-*` cases use the jsonnet renderer).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use capstan_render::{
    HelmOptions, JsonnetOptions, JsonnetValue, Limits, RenderEngine, RenderOptions, RendererKind,
};
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

fn test_spec(case: &Path) -> Value {
    std::fs::read_to_string(case.join("capstan-test.json"))
        .map(|text| serde_json::from_str(&text).expect("capstan-test.json is JSON"))
        .unwrap_or(Value::Null)
}

/// `ext_str`, `ext_code`, `tla_str`, `tla_code` (objects), `jpath` (list), `main` (string).
fn jsonnet_options(case: &Path) -> JsonnetOptions {
    let spec = test_spec(case);
    let values = |str_key: &str, code_key: &str| -> BTreeMap<String, JsonnetValue> {
        let mut out = BTreeMap::new();
        for (key, code) in [(str_key, false), (code_key, true)] {
            for (name, value) in spec
                .get(key)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let value = value.as_str().expect("string value").to_owned();
                out.insert(
                    name.clone(),
                    if code {
                        JsonnetValue::Code(value)
                    } else {
                        JsonnetValue::String(value)
                    },
                );
            }
        }
        out
    };
    JsonnetOptions {
        main: spec.get("main").and_then(Value::as_str).map(str::to_owned),
        ext_vars: values("ext_str", "ext_code"),
        tlas: values("tla_str", "tla_code"),
        jpath: spec
            .get("jpath")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The C++ `jsonnet` CLI on each entry file; its JSON read as Argo CD reads it.
fn jsonnet_reference(case: &Path, options: &JsonnetOptions) -> Vec<Value> {
    let app = case.join("app");
    let entries: Vec<PathBuf> = match &options.main {
        Some(main) => vec![app.join(main)],
        None => {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&app)
                .expect("app dir")
                .map(|e| e.expect("entry").path())
                .filter(|p| p.extension().is_some_and(|e| e == "jsonnet"))
                .collect();
            entries.sort();
            entries
        }
    };
    let mut objects = Vec::new();
    for entry in entries {
        let mut command = Command::new(tool("jsonnet"));
        command.current_dir(&app);
        for dir in &options.jpath {
            command.arg("-J").arg(case.join(dir));
        }
        for (flag, map) in [("ext", &options.ext_vars), ("tla", &options.tlas)] {
            for (name, value) in map {
                let (kind, value) = match value {
                    JsonnetValue::String(s) => ("str", s),
                    JsonnetValue::Code(c) => ("code", c),
                };
                command
                    .arg(format!("--{flag}-{kind}"))
                    .arg(format!("{name}={value}"));
            }
        }
        let output = command.arg(&entry).output().expect("jsonnet runs");
        assert!(
            output.status.success(),
            "jsonnet failed for {}: {}",
            entry.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let value: Value = serde_json::from_slice(&output.stdout).expect("jsonnet prints JSON");
        flatten(value, &mut objects);
    }
    objects
}

/// Arrays (nested too) flattened, `kind: List` expanded, `null` skipped.
fn flatten(value: Value, objects: &mut Vec<Value>) {
    match value {
        Value::Array(items) => items.into_iter().for_each(|item| flatten(item, objects)),
        Value::Null => {}
        Value::Object(ref map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
            for item in map["items"].as_array().expect("List items").clone() {
                flatten(item, objects);
            }
        }
        object => objects.push(object),
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
    let mut jsonnet_compared = 0;
    for case in &cases {
        let name = case
            .file_name()
            .expect("case name")
            .to_string_lossy()
            .into_owned();
        let kind = name.split('-').next().expect("case prefix").to_owned();
        let helm = helm_options(case);
        let jsonnet = jsonnet_options(case);
        let options = RenderOptions {
            renderer: (kind == "jsonnet" || name.starts_with("err-jsonnet-"))
                .then_some(RendererKind::Jsonnet),
            helm: helm.clone(),
            jsonnet: jsonnet.clone(),
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
        let theirs = object_set(if kind == "jsonnet" {
            jsonnet_reference(case, &jsonnet)
        } else {
            reference(case, &kind, &helm)
        });
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
        if kind == "jsonnet" {
            jsonnet_compared += 1;
        }
    }
    assert!(compared >= 30, "only {compared} differential cases");
    assert!(
        jsonnet_compared >= 5,
        "only {jsonnet_compared} jsonnet cases"
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
