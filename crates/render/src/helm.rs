//! The Helm renderer: `helm template` of a chart stored in the repository (dependencies already in
//! `charts/`), with CRDs from `crds/` included and chart hooks kept with their annotations.
//!
//! Provenance comes from the `# Source:` comment helm writes before each document, mapped back to
//! the chart file in the repository.
//!
//! # Helm hooks
//! Hook objects are rendered like any other object, annotations (`helm.sh/hook`, `-weight`,
//! `-delete-policy`) intact: the sync stage maps them onto its own hooks (`capstan_plan::hooks`), so the
//! mapping lives in one place.

use std::path::{Path, PathBuf};

use crate::{Limits, RenderError, RenderedObject, yaml};

/// Splits helm's output into documents, each with the chart-relative file it came from.
pub fn parse_output(
    output: &[u8],
    chart_dir_shown: &Path,
    limits: &Limits,
) -> Result<Vec<RenderedObject>, RenderError> {
    let text = String::from_utf8_lossy(output);
    let mut objects = Vec::new();
    let mut source = chart_dir_shown.to_path_buf();
    let mut document_in_source = 0usize;
    let mut chunk = String::new();
    let mut flush =
        |chunk: &mut String, source: &Path, document: &mut usize| -> Result<(), RenderError> {
            if chunk.trim().is_empty() {
                chunk.clear();
                return Ok(());
            }
            let mut parsed = yaml::parse_stream(chunk, source, limits)?;
            for object in &mut parsed {
                object.provenance.document = *document;
            }
            *document += 1;
            objects.extend(parsed);
            chunk.clear();
            Ok(())
        };
    for line in text.lines() {
        if line.trim_end() == "---" {
            flush(&mut chunk, &source, &mut document_in_source)?;
            continue;
        }
        if let Some(template) = line.strip_prefix("# Source: ") {
            flush(&mut chunk, &source, &mut document_in_source)?;
            let new_source = source_in_repo(chart_dir_shown, template.trim());
            if new_source != source {
                source = new_source;
                document_in_source = 0;
            }
            continue;
        }
        chunk.push_str(line);
        chunk.push('\n');
    }
    flush(&mut chunk, &source, &mut document_in_source)?;
    if objects.len() > limits.max_documents {
        return Err(RenderError::TooManyDocuments {
            path: chart_dir_shown.to_path_buf(),
            limit: limits.max_documents,
        });
    }
    Ok(objects)
}

/// `mychart/charts/sub/templates/a.yaml` → `<chart dir>/charts/sub/templates/a.yaml`.
fn source_in_repo(chart_dir_shown: &Path, template: &str) -> PathBuf {
    let without_chart_name = template.split_once('/').map_or(template, |(_, rest)| rest);
    chart_dir_shown.join(without_chart_name)
}
