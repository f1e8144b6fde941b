//! The app file (`capstan.yaml`): one app's identity, source, rendering, destination and policy, so a
//! sync is reproducible from a file in Git. Documented in docs/app-file.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use capstan_apply::Conflicts;
use capstan_cluster::PropagationPolicy;
use capstan_core::ownership::AppId;
use capstan_engine::{App, Policy};
use capstan_health::HealthRules;
use capstan_plan::IgnoreDifference;
use capstan_render::{HelmOptions, JsonnetOptions, JsonnetValue, RenderOptions};
use capstan_source::{Auth, Reference, SourceSpec};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppFile {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    /// Where the app's inventory lives; defaults to the destination namespace.
    pub namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    pub source: Source,
    #[serde(default)]
    pub render: Render,
    pub destination: Destination,
    #[serde(default)]
    pub sync_policy: SyncPolicy,
    #[serde(default)]
    pub health_checks: Vec<HealthCheck>,
    /// Fields of existing objects that are neither compared nor applied; see capstan-plan's `ignore`.
    #[serde(default)]
    pub ignore_differences: Vec<IgnoreDifference>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// A directory, relative to the app file (with `git`: a directory inside the repository).
    pub path: Option<PathBuf>,
    /// A Git repository; the app is `path` inside it at `ref`.
    pub git: Option<GitSource>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitSource {
    pub url: String,
    /// BRANCH, tag:NAME, semver:RANGE, commit:SHA, BRANCH@SHA
    #[serde(default = "default_ref", rename = "ref")]
    pub reference: String,
    /// SSH private key file (relative to the app file).
    pub ssh_key: Option<PathBuf>,
    /// File holding the SSH key's passphrase (relative to the app file); needs `sshKey`.
    pub ssh_key_passphrase_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
}

fn default_ref() -> String {
    "main".into()
}

/// How the source directory becomes objects; see capstan-render.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Render {
    /// plain, kustomize, helm or jsonnet; detected when absent (jsonnet never is).
    pub renderer: Option<String>,
    /// Plain: globs relative to the source directory.
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub helm: Helm,
    #[serde(default)]
    pub jsonnet: Jsonnet,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Helm {
    pub release_name: Option<String>,
    /// Relative to the chart directory, inside the repository.
    #[serde(default)]
    pub values_files: Vec<String>,
    /// Inline values (YAML text), applied after the files.
    pub values: Option<String>,
}

/// Jsonnet inputs, named like Argo CD's `directory.jsonnet` (`libs` is `jpath` here).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Jsonnet {
    #[serde(default)]
    pub ext_vars: Vec<JsonnetVar>,
    #[serde(default)]
    pub tlas: Vec<JsonnetVar>,
    /// Library directories, relative to the repository root; the last one is searched first.
    #[serde(default)]
    pub jpath: Vec<String>,
    /// The entry file, relative to the source directory; default: every `*.jsonnet` in it.
    pub main: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonnetVar {
    pub name: String,
    pub value: String,
    /// The value is Jsonnet code, not a string.
    #[serde(default)]
    pub code: bool,
}

fn jsonnet_values(
    vars: &[JsonnetVar],
    field: &str,
    path: &Path,
) -> anyhow::Result<BTreeMap<String, JsonnetValue>> {
    let mut out = BTreeMap::new();
    for var in vars {
        let value = if var.code {
            JsonnetValue::Code(var.value.clone())
        } else {
            JsonnetValue::String(var.value.clone())
        };
        if out.insert(var.name.clone(), value).is_some() {
            bail!(
                "app file {}: spec.render.jsonnet.{field}: {:?} is given twice",
                path.display(),
                var.name
            );
        }
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    pub namespace: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncPolicy {
    #[serde(default)]
    pub prune: bool,
    #[serde(default)]
    pub allow_empty: bool,
    #[serde(default)]
    pub conflicts: ConflictPolicy,
    #[serde(default)]
    pub replace: bool,
    #[serde(default)]
    pub propagation: Propagation,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConflictPolicy {
    #[default]
    TakeOwnership,
    Fail,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    #[serde(default)]
    pub group: String,
    pub kind: String,
    pub cel: String,
}

pub const API_VERSION: &str = "capstan.dev/v1alpha1";

/// Where an app's manifests come from.
#[derive(Clone, Debug)]
pub enum AppSource {
    /// A local directory (the repository root is its nearest ancestor holding `.git`).
    Directory(PathBuf),
    /// `path` inside a Git repository at a reference, fetched by the source stage.
    Git { spec: SourceSpec, path: PathBuf },
}

/// An app with everything a sync needs, from an app file or from flags.
pub struct LoadedApp {
    pub app: App,
    pub source: Option<AppSource>,
    pub render: RenderOptions,
    pub health_rules: HealthRules,
}

pub fn load(path: &Path) -> anyhow::Result<LoadedApp> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading app file {}", path.display()))?;
    let file: AppFile =
        serde_saphyr::from_str(&text).with_context(|| format!("app file {}", path.display()))?;
    if file.api_version != API_VERSION || file.kind != "App" {
        bail!(
            "app file {}: expected apiVersion {API_VERSION} and kind App, found {} {}",
            path.display(),
            file.api_version,
            file.kind
        );
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut health_rules = HealthRules::new();
    for check in &file.spec.health_checks {
        health_rules
            .add(&check.group, &check.kind, &check.cel)
            .with_context(|| format!("app file {}: spec.healthChecks", path.display()))?;
    }
    // The plan checks the rules too; checking here names the file before anything is fetched.
    capstan_plan::ignore::IgnoreRules::new(
        &file.spec.ignore_differences,
        capstan_cluster::FIELD_MANAGER,
    )
    .with_context(|| format!("app file {}: spec", path.display()))?;
    let policy = &file.spec.sync_policy;
    let app = App {
        id: AppId::new(
            file.metadata
                .namespace
                .clone()
                .unwrap_or_else(|| file.spec.destination.namespace.clone()),
            file.metadata.name.clone(),
        ),
        destination_namespace: file.spec.destination.namespace.clone(),
        policy: Policy {
            prune: policy.prune,
            allow_empty: policy.allow_empty,
            conflicts: match policy.conflicts {
                ConflictPolicy::TakeOwnership => Conflicts::TakeOwnership,
                ConflictPolicy::Fail => Conflicts::Fail,
            },
            replace: policy.replace,
            propagation: match policy.propagation {
                Propagation::Background => PropagationPolicy::Background,
                Propagation::Foreground => PropagationPolicy::Foreground,
                Propagation::Orphan => PropagationPolicy::Orphan,
            },
            ignore_differences: file.spec.ignore_differences.clone(),
            dry_run_all: false,
        },
    };
    let render = &file.spec.render;
    let render = RenderOptions {
        renderer: render
            .renderer
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| {
                anyhow::anyhow!("app file {}: spec.render.renderer: {e}", path.display())
            })?,
        include: render.include.clone(),
        exclude: render.exclude.clone(),
        helm: HelmOptions {
            release_name: render.helm.release_name.clone(),
            namespace: Some(file.spec.destination.namespace.clone()),
            values_files: render.helm.values_files.clone(),
            values: render.helm.values.clone(),
            ..Default::default()
        },
        jsonnet: JsonnetOptions {
            main: render.jsonnet.main.clone(),
            ext_vars: jsonnet_values(&render.jsonnet.ext_vars, "extVars", path)?,
            tlas: jsonnet_values(&render.jsonnet.tlas, "tlas", path)?,
            jpath: render.jsonnet.jpath.clone(),
        },
        ..Default::default()
    };
    let source = &file.spec.source;
    let source = match &source.git {
        Some(git) => Some(AppSource::Git {
            spec: SourceSpec {
                url: git.url.clone(),
                reference: Reference::parse(&git.reference)
                    .with_context(|| format!("app file {}: spec.source.git.ref", path.display()))?,
                auth: match (&git.ssh_key, &git.ssh_key_passphrase_file) {
                    (Some(key), passphrase_file) => Auth::Ssh {
                        private_key: base.join(key),
                        known_hosts: git.known_hosts.as_ref().map(|k| base.join(k)),
                        passphrase: passphrase_file
                            .as_ref()
                            .map(|file| {
                                capstan_source::spec::read_passphrase_file(
                                    &base.join(file),
                                    &git.url,
                                )
                            })
                            .transpose()
                            .with_context(|| {
                                format!(
                                    "app file {}: spec.source.git.sshKeyPassphraseFile",
                                    path.display()
                                )
                            })?,
                    },
                    (None, Some(_)) => anyhow::bail!(
                        "app file {}: spec.source.git.sshKeyPassphraseFile needs spec.source.git.sshKey",
                        path.display()
                    ),
                    (None, None) => Auth::None,
                },
                verification: None,
            },
            path: source.path.clone().unwrap_or_else(|| PathBuf::from(".")),
        }),
        None => source
            .path
            .as_ref()
            .map(|p| AppSource::Directory(base.join(p))),
    };
    Ok(LoadedApp {
        app,
        source,
        render,
        health_rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIT_APP: &str = "apiVersion: capstan.dev/v1alpha1
kind: App
metadata: {name: shop}
spec:
  source:
    path: deploy
    git:
      url: ssh://git@git.example.com/shop.git
      ref: main
";

    #[test]
    fn git_source_reads_the_ssh_key_passphrase_from_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("passphrase"), "open sesame\n").expect("passphrase");
        let file = dir.path().join("app.yaml");
        std::fs::write(
            &file,
            format!(
                "{GIT_APP}      sshKey: keys/id\n      sshKeyPassphraseFile: passphrase\n  destination: {{namespace: shop}}\n"
            ),
        )
        .expect("app file");
        let loaded = load(&file).expect("load");
        let Some(AppSource::Git { spec, .. }) = loaded.source else {
            panic!("expected a git source");
        };
        let Auth::Ssh {
            private_key,
            passphrase,
            ..
        } = &spec.auth
        else {
            panic!("expected ssh auth");
        };
        assert_eq!(private_key, &dir.path().join("keys/id"));
        assert_eq!(passphrase.as_ref().map(|p| p.expose()), Some("open sesame"));
        assert!(!format!("{spec:?}").contains("open sesame"));
    }

    #[test]
    fn a_passphrase_file_without_a_key_or_missing_is_an_error_naming_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("app.yaml");
        std::fs::write(
            &file,
            format!("{GIT_APP}      sshKeyPassphraseFile: passphrase\n  destination: {{namespace: shop}}\n"),
        )
        .expect("app file");
        let err = format!("{:#}", load(&file).err().expect("no key"));
        assert!(
            err.contains("sshKeyPassphraseFile needs spec.source.git.sshKey"),
            "{err}"
        );

        std::fs::write(
            &file,
            format!(
                "{GIT_APP}      sshKey: id\n      sshKeyPassphraseFile: missing\n  destination: {{namespace: shop}}\n"
            ),
        )
        .expect("app file");
        let err = format!("{:#}", load(&file).err().expect("missing file"));
        assert!(
            err.contains("spec.source.git.sshKeyPassphraseFile"),
            "{err}"
        );
        assert!(err.contains("missing"), "{err}");
    }

    fn write_app(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("capstan.yaml");
        std::fs::write(&path, text).expect("write app file");
        (dir, path)
    }

    const HEAD: &str = "apiVersion: capstan.dev/v1alpha1\nkind: App\nmetadata: {name: shop}\nspec:\n  source: {path: shop}\n  destination: {namespace: shop}\n";

    #[test]
    fn jsonnet_render_options_are_read() {
        let (_dir, path) = write_app(&format!(
            "{HEAD}  render:\n    renderer: jsonnet\n    jsonnet:\n      main: prod.jsonnet\n      jpath: [vendor, lib]\n      extVars:\n        - {{name: env, value: prod}}\n        - {{name: flags, value: \"[1, 2]\", code: true}}\n      tlas:\n        - {{name: ns, value: shop}}\n"
        ));
        let loaded = load(&path).expect("valid app file");
        let jsonnet = &loaded.render.jsonnet;
        assert_eq!(
            loaded.render.renderer,
            Some(capstan_render::RendererKind::Jsonnet)
        );
        assert_eq!(jsonnet.main.as_deref(), Some("prod.jsonnet"));
        assert_eq!(jsonnet.jpath, vec!["vendor".to_owned(), "lib".to_owned()]);
        assert_eq!(
            jsonnet.ext_vars.get("env"),
            Some(&JsonnetValue::String("prod".into()))
        );
        assert_eq!(
            jsonnet.ext_vars.get("flags"),
            Some(&JsonnetValue::Code("[1, 2]".into()))
        );
        assert_eq!(
            jsonnet.tlas.get("ns"),
            Some(&JsonnetValue::String("shop".into()))
        );
    }

    #[test]
    fn a_jsonnet_variable_given_twice_is_an_error() {
        let (_dir, path) = write_app(&format!(
            "{HEAD}  render:\n    jsonnet:\n      tlas: [{{name: ns, value: a}}, {{name: ns, value: b}}]\n"
        ));
        let error = load(&path).err().expect("duplicate TLA").to_string();
        assert!(
            error.contains("spec.render.jsonnet.tlas") && error.contains("\"ns\""),
            "{error}"
        );
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shop.capstan.yaml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    const IGNORE_HEAD: &str = "apiVersion: capstan.dev/v1alpha1\nkind: App\nmetadata: {name: shop}\n\
                        spec:\n  source: {path: .}\n  destination: {namespace: shop}\n";

    #[test]
    fn ignore_differences_reach_the_policy() {
        let (_dir, path) = write(&format!(
            "{IGNORE_HEAD}  ignoreDifferences:\n    - group: apps\n      kind: Deployment\n      \
             name: web\n      jsonPointers: [/spec/replicas]\n    - kind: ConfigMap\n      \
             managers: [operator]\n"
        ));
        let loaded = load(&path).expect("load");
        let rules = &loaded.app.policy.ignore_differences;
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].json_pointers, vec!["/spec/replicas".to_string()]);
        assert_eq!(rules[0].name.as_deref(), Some("web"));
        assert_eq!(rules[1].group, "", "core group by default");
        assert_eq!(rules[1].managers, vec!["operator".to_string()]);
    }

    #[test]
    fn a_malformed_pointer_names_the_file_and_the_rule() {
        let (_dir, path) = write(&format!(
            "{IGNORE_HEAD}  ignoreDifferences:\n    - group: apps\n      kind: Deployment\n      \
             jsonPointers: [spec/replicas]\n"
        ));
        let err = format!("{:#}", load(&path).err().expect("malformed pointer"));
        assert!(
            err.contains("shop.capstan.yaml")
                && err.contains("ignoreDifferences[0] (Deployment.apps)")
                && err.contains("jsonPointers[0]")
                && err.contains("must start with '/'"),
            "{err}"
        );
    }
}
