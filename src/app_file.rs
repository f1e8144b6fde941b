//! Loading the app file (`capstan.yaml`): its schema is `capstan_api::app_file` (a view of the one
//! `AppSpec`, docs/app-file.md); here it becomes what the CLI needs, with paths resolved against the
//! file and every error naming it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use capstan_api::AppSpec;
use capstan_api::app_file::AppFile;
use capstan_api::spec::Source;
use capstan_core::ownership::AppId;
use capstan_engine::App;
use capstan_engine::health::HealthRules;
use capstan_engine::render::RenderOptions;
use capstan_source::{Auth, Reference, SourceSpec};

/// Where an app's manifests come from.
#[derive(Clone, Debug)]
pub enum AppSource {
    /// A local directory; the repository root is searched from `anchor` (the directory itself, or
    /// the app file's directory) by `capstan_engine::render::local_app`, and the directory must
    /// resolve inside it.
    Directory { dir: PathBuf, anchor: PathBuf },
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

impl LoadedApp {
    /// An app given by its spec (from an app file or flags); `base` resolves the spec's local paths.
    pub fn from_spec(id: AppId, spec: &AppSpec, base: &Path) -> anyhow::Result<Self> {
        capstan_engine::spec::check(spec)?;
        let source = match &spec.source {
            Source::Git { git, path } => Some(AppSource::Git {
                spec: SourceSpec {
                    url: git.url.clone(),
                    reference: Reference::parse(&git.reference).context("spec.source.git.ref")?,
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
                                .context("spec.source.git.sshKeyPassphraseFile")?,
                        },
                        (None, Some(_)) => {
                            bail!(
                                "spec.source.git.sshKeyPassphraseFile needs spec.source.git.sshKey"
                            )
                        }
                        (None, None) => Auth::None,
                    },
                    verification: None,
                },
                path: PathBuf::from(path),
            }),
            Source::Directory { path } => Some(AppSource::Directory {
                dir: base.join(path),
                anchor: base.to_path_buf(),
            }),
            Source::Repository { reference, .. } => bail!(
                "spec.sourceRef ({} {}) names a source only the controller fetches",
                reference.kind,
                reference.name
            ),
            Source::Unset => None,
        };
        Ok(LoadedApp {
            app: App::new(id, spec),
            source,
            render: capstan_engine::spec::render_options(spec)?,
            health_rules: capstan_engine::spec::health_rules(spec)?,
        })
    }
}

pub fn load(path: &Path) -> anyhow::Result<LoadedApp> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading app file {}", path.display()))?;
    let file = AppFile::parse(&text).with_context(|| format!("app file {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let id = AppId::new(file.namespace(), file.metadata.name.clone());
    LoadedApp::from_spec(id, &file.app_spec(), base)
        .map_err(|e| anyhow::anyhow!("app file {}: {e:#}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_engine::render::JsonnetValue;

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
            Some(capstan_engine::render::RendererKind::Jsonnet)
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
