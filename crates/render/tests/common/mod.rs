//! Shared helpers for the render tests: finding the reference binaries and canonicalising objects.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use capstan_render::Tools;
use serde_json::Value;

pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// `CAPSTAN_<NAME>`, else PATH, else the cache testenv/build and testenv/tools fill. A missing tool
/// fails the test: run `testenv/tools` (or `./x deps`).
pub fn tool(name: &str) -> PathBuf {
    let var = format!("CAPSTAN_{}", name.to_uppercase());
    if let Some(path) = std::env::var_os(&var) {
        return PathBuf::from(path);
    }
    let on_path = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    let cache = PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/capstan");
    let cached = [
        cache.join("tools/helm-v4.1.4/bin").join(name),
        cache.join("tools/kustomize-v5.7.1/bin").join(name),
        cache.join("testenv/k8s-v1.34.4/bin").join(name),
    ]
    .into_iter()
    .find(|candidate| candidate.is_file());
    on_path.or(cached).unwrap_or_else(|| {
        panic!(
            "{name} not found: set {var}, put it on PATH, or run testenv/tools and testenv/build"
        )
    })
}

pub fn tools() -> Tools {
    Tools {
        helm: Some(tool("helm")),
        kustomize: Some(tool("kustomize")),
        kubectl: Some(tool("kubectl")),
    }
}

/// Makes objects comparable across tools: `kubectl label --local` adds an empty `metadata.labels`,
/// which is dropped. Nothing else is normalised: key order and scalar style are gone once parsed.
pub fn canonical(mut value: Value) -> Value {
    if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut)
        && metadata
            .get("labels")
            .and_then(Value::as_object)
            .is_some_and(|l| l.is_empty())
    {
        metadata.remove("labels");
    }
    value
}

/// Objects keyed by identity; a duplicate identity fails the test.
pub fn object_set(objects: impl IntoIterator<Item = Value>) -> BTreeMap<String, Value> {
    let mut set = BTreeMap::new();
    for object in objects {
        let key = capstan_render::object_key(&object);
        assert!(
            set.insert(key.clone(), canonical(object)).is_none(),
            "duplicate object {key}"
        );
    }
    set
}

/// Parses a tool's stdout: a YAML stream or concatenated JSON documents.
pub fn parse_tool_output(output: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(output);
    if text.trim_start().starts_with('{') {
        return serde_json::Deserializer::from_str(&text)
            .into_iter::<Value>()
            .map(|v| v.expect("tool output is JSON"))
            .collect();
    }
    let limits = capstan_render::Limits::default();
    capstan_render::yaml::parse_stream(&text, Path::new("<reference>"), &limits)
        .expect("reference output parses")
        .into_iter()
        .map(|o| o.object)
        .collect()
}

/// Copies a directory tree (for tests that modify a corpus case).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create copy target");
    for entry in std::fs::read_dir(from).expect("read corpus dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}
