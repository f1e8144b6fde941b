//! The Kustomize renderer: runs the `kustomize` binary (or `kubectl kustomize`) with
//! `--load-restrictor LoadRestrictionsRootOnly`, no plugins, no Helm, a scrubbed environment, a
//! timeout and an output cap. Before spawning, it walks the kustomization graph itself: every path a
//! kustomization names is confined to the repository, remote bases are refused (render does no network
//! I/O: a base must be in the repository), and the files found are the render's inputs (the cache key). Provenance of an output object is the
//! app's kustomization file and the object's index in kustomize's output, because kustomize does not
//! say which input file an object came from.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::confine::{RepoRoot, walk_files};
use crate::{Limits, RenderError, yaml};

pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

pub fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

/// Fields whose values name files or directories, relative to the kustomization.
const PATH_LISTS: [&str; 10] = [
    "resources",
    "bases",
    "components",
    "patchesStrategicMerge",
    "crds",
    "configurations",
    "transformers",
    "generators",
    "validators",
    "replacements",
];

fn looks_remote(reference: &str) -> bool {
    reference.contains("://")
        || reference.starts_with("git@")
        || reference.starts_with("git::")
        || reference.starts_with("github.com/")
        || reference.starts_with("gitlab.com/")
        || reference.starts_with("bitbucket.org/")
        || reference.contains("?ref=")
        || reference.contains(".git//")
}

/// Collects every input file of the kustomization in `dir` (recursively through bases and
/// components) into `inputs`, confining each path.
pub fn collect_inputs(
    root: &RepoRoot,
    dir: &Path,
    limits: &Limits,
    inputs: &mut BTreeSet<PathBuf>,
    stack: &mut Vec<PathBuf>,
) -> Result<(), RenderError> {
    let dir = root.confine(dir, dir)?;
    if stack.contains(&dir) {
        let mut cycle: Vec<String> = stack
            .iter()
            .map(|d| root.display_path(d).display().to_string())
            .collect();
        cycle.push(root.display_path(&dir).display().to_string());
        return Err(RenderError::Options {
            path: root.display_path(&dir),
            message: format!("cyclic kustomization reference: {}", cycle.join(" -> ")),
        });
    }
    let Some(file) = kustomization_file(&dir) else {
        return Err(RenderError::Detection {
            path: root.display_path(&dir),
            reason: format!(
                "no {} in a directory used as a kustomization",
                KUSTOMIZATION_FILES.join(" or ")
            ),
        });
    };
    stack.push(dir.clone());
    let shown = root.display_path(&file);
    for path in walk_files(root, &dir)? {
        inputs.insert(root.confine(&path, &shown)?);
    }
    let bytes = root.read(&file, limits.max_file_bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&text).map_err(|error| RenderError::Yaml {
            path: shown.clone(),
            message: error.to_string(),
        })?;
    for kustomization in documents {
        for reference in references(&kustomization) {
            if looks_remote(&reference) {
                return Err(RenderError::RemoteBase {
                    path: shown.clone(),
                    reference,
                });
            }
            let target = root.resolve(&dir, &reference, &shown)?;
            if target.is_dir() {
                collect_inputs(root, &target, limits, inputs, stack)?;
            } else {
                inputs.insert(target);
            }
        }
    }
    stack.pop();
    Ok(())
}

/// The file references a kustomization makes.
fn references(kustomization: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let string_list = |value: Option<&Value>| -> Vec<String> {
        value
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    for field in PATH_LISTS {
        for item in kustomization
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            match item {
                // Inline patches and transformer configs are multi-line strings, not paths.
                Value::String(s) if !s.contains('\n') => found.push(s.clone()),
                Value::Object(map) => {
                    if let Some(path) = map.get("path").and_then(Value::as_str) {
                        found.push(path.to_owned());
                    }
                }
                _ => {}
            }
        }
    }
    for field in ["patches", "patchesJson6902"] {
        for item in kustomization
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(path) = item.get("path").and_then(Value::as_str) {
                found.push(path.to_owned());
            }
        }
    }
    for field in ["configMapGenerator", "secretGenerator"] {
        for generator in kustomization
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for file in string_list(generator.get("files")) {
                // `key=path` names the key explicitly.
                let path = file.split_once('=').map_or(file.as_str(), |(_, p)| p);
                found.push(path.to_owned());
            }
            for env in string_list(generator.get("envs")) {
                found.push(env);
            }
            if let Some(env) = generator.get("env").and_then(Value::as_str) {
                found.push(env.to_owned());
            }
        }
    }
    if let Some(path) = kustomization
        .pointer("/openapi/path")
        .and_then(Value::as_str)
    {
        found.push(path.to_owned());
    }
    found
}

pub fn parse_output(
    output: &[u8],
    kustomization: &Path,
    limits: &Limits,
) -> Result<Vec<crate::RenderedObject>, RenderError> {
    let text = String::from_utf8_lossy(output);
    yaml::parse_stream(&text, kustomization, limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_references_are_recognised() {
        for remote in [
            "github.com/org/repo/base?ref=v1",
            "https://example.com/base.yaml",
            "git@github.com:org/repo.git//base",
            "git::https://example.com/repo",
            "ssh://git@example.com/repo",
        ] {
            assert!(looks_remote(remote), "{remote}");
        }
        for local in ["../base", "deployment.yaml", "a/b/c", "github.yaml"] {
            assert!(!looks_remote(local), "{local}");
        }
    }

    #[test]
    fn references_cover_resources_patches_and_generators() {
        let kustomization: Value = serde_json::json!({
            "resources": ["../base", "github.com/x/y?ref=v1"],
            "components": ["../comp"],
            "patches": [{"path": "p.yaml"}, {"patch": "- op: remove\n  path: /spec"}],
            "patchesStrategicMerge": ["sm.yaml", "apiVersion: v1\nkind: ConfigMap\n"],
            "configMapGenerator": [{"files": ["a.txt", "key=b.txt"], "envs": ["e.env"]}],
            "secretGenerator": [{"env": "s.env"}],
            "replacements": [{"path": "r.yaml"}],
        });
        let found = references(&kustomization);
        let paths: Vec<&str> = found.iter().map(String::as_str).collect();
        assert_eq!(
            paths,
            vec![
                "../base",
                "github.com/x/y?ref=v1",
                "../comp",
                "sm.yaml",
                "r.yaml",
                "p.yaml",
                "a.txt",
                "b.txt",
                "e.env",
                "s.env"
            ]
        );
    }
}
