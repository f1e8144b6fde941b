//! The plain renderer: a recursive walk of the app directory (include/exclude globs over paths
//! relative to the app directory; `.yaml`, `.yml`, `.json`), each file read as a multi-document stream.

use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::confine::{RepoRoot, walk_files};
use crate::{Limits, RenderError, RenderOptions, RenderedObject, yaml};

fn glob_set(globs: &[String], app: &Path) -> Result<Option<GlobSet>, RenderError> {
    if globs.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        builder.add(Glob::new(glob).map_err(|error| RenderError::Glob {
            path: app.to_path_buf(),
            glob: glob.clone(),
            message: error.to_string(),
        })?);
    }
    builder
        .build()
        .map(Some)
        .map_err(|error| RenderError::Glob {
            path: app.to_path_buf(),
            glob: globs.join(","),
            message: error.to_string(),
        })
}

pub fn render(
    root: &RepoRoot,
    app_dir: &Path,
    options: &RenderOptions,
    limits: &Limits,
) -> Result<Vec<RenderedObject>, RenderError> {
    let shown_app = root.display_path(app_dir);
    let include = glob_set(&options.include, &shown_app)?;
    let exclude = glob_set(&options.exclude, &shown_app)?;
    let mut objects = Vec::new();
    for file in walk_files(root, app_dir)? {
        let relative = file.strip_prefix(app_dir).unwrap_or(&file);
        let is_manifest = file
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json");
        if !is_manifest
            || include.as_ref().is_some_and(|g| !g.is_match(relative))
            || exclude.as_ref().is_some_and(|g| g.is_match(relative))
        {
            continue;
        }
        let canonical = root.confine(&file, &shown_app)?;
        let shown = root.display_path(&file);
        let bytes = root.read(&canonical, limits.max_file_bytes)?;
        let text = String::from_utf8(bytes).map_err(|error| RenderError::Yaml {
            path: shown.clone(),
            message: format!("not UTF-8: {error}"),
        })?;
        objects.extend(yaml::parse_stream(&text, &shown, limits)?);
        if objects.len() > limits.max_documents {
            return Err(RenderError::TooManyDocuments {
                path: shown_app,
                limit: limits.max_documents,
            });
        }
    }
    Ok(objects)
}
