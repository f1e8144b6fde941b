//! Reading manifests the way Kubernetes reads them. Kubernetes decodes YAML with a YAML 1.1 reader
//! (sigs.k8s.io/yaml over go-yaml v2), so `yes`/`on` are booleans and `0755` is octal; this module
//! configures serde-saphyr to match, bounds documents and alias expansion, flattens `kind: List` and
//! skips empty documents.

use std::path::{Path, PathBuf};

use serde_json::Value;
use serde_saphyr::{DuplicateKeyPolicy, Options};

use crate::{Limits, Provenance, RenderError, RenderedObject};

fn options(limits: &Limits) -> Options {
    let mut options = Options::default();
    // go-yaml v2 (what kubectl and the API server use) keeps the last of duplicate keys.
    options.duplicate_keys = DuplicateKeyPolicy::LastWins;
    options.legacy_octal_numbers = true;
    options.strict_booleans = false;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = limits.max_documents;
    budget.max_aliases = limits.max_yaml_aliases;
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = limits.max_alias_replayed_events;
    options
}

/// Parses a YAML (or JSON, which is YAML) stream into objects. Document indices count the documents
/// that hold content, from 0, in stream order; list items share their List's index.
pub fn parse_stream(
    text: &str,
    path: &Path,
    limits: &Limits,
) -> Result<Vec<RenderedObject>, RenderError> {
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options(limits))
        .map_err(|error| RenderError::Yaml {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
    if documents.len() > limits.max_documents {
        return Err(RenderError::TooManyDocuments {
            path: path.to_path_buf(),
            limit: limits.max_documents,
        });
    }
    let mut objects = Vec::with_capacity(documents.len());
    for (document, mut value) in documents.into_iter().enumerate() {
        integral_floats_as_integers(&mut value);
        push_object(value, path.to_path_buf(), document, &mut objects)?;
    }
    Ok(objects)
}

/// Checks that `value` is a Kubernetes object and appends it (or, for a `List`, its items).
pub fn push_object(
    value: Value,
    path: PathBuf,
    document: usize,
    objects: &mut Vec<RenderedObject>,
) -> Result<(), RenderError> {
    let invalid = |message: String| RenderError::InvalidObject {
        path: path.clone(),
        document,
        message,
    };
    let Value::Object(map) = &value else {
        if value.is_null() {
            return Ok(());
        }
        return Err(invalid(format!(
            "expected a mapping, found {}",
            kind_of(&value)
        )));
    };
    if map.is_empty() {
        return Ok(());
    }
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or_default();
    let api_version = map
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind.is_empty() {
        return Err(invalid("missing string field `kind`".into()));
    }
    if api_version.is_empty() {
        return Err(invalid("missing string field `apiVersion`".into()));
    }
    // `kind: List` (and `FooList`, as kubectl accepts) wraps objects; Kubernetes applies its items.
    if kind.ends_with("List") && map.get("items").is_some_and(Value::is_array) {
        let Some(Value::Array(items)) = map.get("items").cloned() else {
            return Ok(());
        };
        for item in items {
            push_object(item, path.clone(), document, objects)?;
        }
        return Ok(());
    }
    let metadata = map.get("metadata").and_then(Value::as_object);
    let has_name = metadata.is_some_and(|m| {
        ["name", "generateName"].iter().any(|k| {
            m.get(*k)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
        })
    });
    if !has_name {
        return Err(invalid(format!("{kind} has no metadata.name")));
    }
    objects.push(RenderedObject {
        object: value,
        provenance: Provenance {
            file: path,
            document,
        },
    });
    Ok(())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a sequence",
        Value::Object(_) => "a mapping",
    }
}

/// Kubernetes turns YAML into JSON with Go's encoder, which writes an integral float such as `1e3` or
/// `08` as `1000` / `8`; a typed field (`replicas: int32`) accepts only that spelling. Go switches to
/// exponent form from 1e21, so only floats that fit an i64 are rewritten.
fn integral_floats_as_integers(value: &mut Value) {
    match value {
        Value::Number(number) if number.is_f64() => {
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
                && float.abs() < 9.0e18
            {
                *value = Value::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}
