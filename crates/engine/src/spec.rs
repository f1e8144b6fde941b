//! From the one application spec ([`AppSpec`]) to each stage's options: the engine's [`App`] and
//! [`Policy`], the render stage's [`RenderOptions`] and the health stage's [`HealthRules`]. Both
//! front ends (the app file and the `Application` CRD) go through these functions, so a field means
//! the same wherever it is written.

use std::collections::BTreeMap;

use capstan_api::AppSpec;
use capstan_api::spec::{ConflictPolicy, JsonnetVariable, Propagation, Renderer};
use capstan_apply::Conflicts;
use capstan_core::api::{FIELD_MANAGER, PropagationPolicy};
use capstan_core::ownership::AppId;
use capstan_health::{HealthError, HealthRules};
use capstan_plan::IgnoreRuleError;
use capstan_plan::ignore::IgnoreRules;
use capstan_render::{HelmOptions, JsonnetOptions, JsonnetValue, RenderOptions, RendererKind};

use crate::{App, Policy};

/// A spec the stages cannot use, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A Jsonnet ext var or TLA named twice.
    #[error("spec.render.jsonnet.{field}: {name:?} is given twice")]
    DuplicateJsonnetVariable { field: &'static str, name: String },
    /// A health rule that does not compile, or a second rule for one group/kind.
    #[error("spec.healthChecks[{index}]: {source}")]
    HealthCheck {
        index: usize,
        #[source]
        source: HealthError,
    },
    /// An `ignoreDifferences` rule that cannot be used.
    #[error("spec.{source}")]
    IgnoreDifferences {
        #[source]
        source: IgnoreRuleError,
    },
}

impl App {
    /// The engine's view of an app: identity, destination and policy.
    pub fn new(id: AppId, spec: &AppSpec) -> Self {
        let policy = &spec.sync_policy;
        App {
            id,
            destination_namespace: spec.destination.namespace.clone(),
            policy: Policy {
                prune: policy.prune,
                allow_empty: policy.allow_empty,
                conflicts: conflicts(policy.conflicts),
                replace: policy.replace,
                propagation: propagation(policy.propagation),
                ignore_differences: spec.ignore_differences.clone(),
                dry_run_all: false,
            },
        }
    }
}

fn conflicts(policy: ConflictPolicy) -> Conflicts {
    match policy {
        ConflictPolicy::TakeOwnership => Conflicts::TakeOwnership,
        ConflictPolicy::Fail => Conflicts::Fail,
    }
}

fn propagation(policy: Propagation) -> PropagationPolicy {
    match policy {
        Propagation::Background => PropagationPolicy::Background,
        Propagation::Foreground => PropagationPolicy::Foreground,
        Propagation::Orphan => PropagationPolicy::Orphan,
    }
}

/// The render stage's renderer for the spec's.
pub fn renderer(renderer: Renderer) -> RendererKind {
    match renderer {
        Renderer::Plain => RendererKind::Plain,
        Renderer::Kustomize => RendererKind::Kustomize,
        Renderer::Helm => RendererKind::Helm,
        Renderer::Jsonnet => RendererKind::Jsonnet,
    }
}

/// How the app's directory renders.
pub fn render_options(spec: &AppSpec) -> Result<RenderOptions, SpecError> {
    let render = &spec.render;
    let helm = render.helm.clone().unwrap_or_default();
    let jsonnet = render.jsonnet.clone().unwrap_or_default();
    Ok(RenderOptions {
        renderer: render.renderer.map(renderer),
        include: render.include.clone(),
        exclude: render.exclude.clone(),
        helm: HelmOptions {
            release_name: helm.release_name,
            namespace: Some(spec.destination.namespace.clone()),
            values_files: helm.values_files,
            values: helm.values,
            ..Default::default()
        },
        jsonnet: JsonnetOptions {
            main: jsonnet.main,
            ext_vars: jsonnet_values("extVars", &jsonnet.ext_vars)?,
            tlas: jsonnet_values("tlas", &jsonnet.tlas)?,
            jpath: jsonnet.jpath,
        },
    })
}

fn jsonnet_values(
    field: &'static str,
    variables: &[JsonnetVariable],
) -> Result<BTreeMap<String, JsonnetValue>, SpecError> {
    let mut out = BTreeMap::new();
    for variable in variables {
        let value = if variable.code {
            JsonnetValue::Code(variable.value.clone())
        } else {
            JsonnetValue::String(variable.value.clone())
        };
        if out.insert(variable.name.clone(), value).is_some() {
            return Err(SpecError::DuplicateJsonnetVariable {
                field,
                name: variable.name.clone(),
            });
        }
    }
    Ok(out)
}

/// The app's custom health rules, compiled.
pub fn health_rules(spec: &AppSpec) -> Result<HealthRules, SpecError> {
    let mut rules = HealthRules::new();
    for (index, check) in spec.health_checks.iter().enumerate() {
        rules
            .add(&check.group, &check.kind, &check.cel)
            .map_err(|source| SpecError::HealthCheck { index, source })?;
    }
    Ok(rules)
}

/// Checks everything the stages would refuse later, so a front end can name its file or object
/// before anything is fetched: render options, health rules and `ignoreDifferences`.
pub fn check(spec: &AppSpec) -> Result<(), SpecError> {
    render_options(spec)?;
    health_rules(spec)?;
    IgnoreRules::new(&spec.ignore_differences, FIELD_MANAGER)
        .map_err(|source| SpecError::IgnoreDifferences { source })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use capstan_api::spec::{
        Destination, HealthCheck, HelmSpec, IgnoreDifference, JsonnetSpec, RenderSpec, Source,
        SyncPolicy,
    };

    use super::*;

    fn spec() -> AppSpec {
        AppSpec {
            source: Source::Unset,
            render: RenderSpec::default(),
            destination: Destination {
                namespace: "shop".into(),
            },
            sync_policy: SyncPolicy::default(),
            health_checks: Vec::new(),
            ignore_differences: Vec::new(),
        }
    }

    fn variable(name: &str, value: &str, code: bool) -> JsonnetVariable {
        JsonnetVariable {
            name: name.into(),
            value: value.into(),
            code,
        }
    }

    #[test]
    fn every_render_field_reaches_the_render_options() {
        let mut spec = spec();
        spec.render = RenderSpec {
            renderer: Some(Renderer::Jsonnet),
            include: vec!["**/*.yaml".into()],
            exclude: vec!["tests/**".into()],
            helm: Some(HelmSpec {
                release_name: Some("web".into()),
                values_files: vec!["prod.yaml".into()],
                values: Some("replicas: 3".into()),
            }),
            jsonnet: Some(JsonnetSpec {
                main: Some("main.jsonnet".into()),
                ext_vars: vec![variable("env", "prod", false)],
                tlas: vec![variable("replicas", "3", true)],
                jpath: vec!["vendor".into()],
            }),
        };
        let options = render_options(&spec).expect("options");
        assert_eq!(options.renderer, Some(RendererKind::Jsonnet));
        assert_eq!(options.include, vec!["**/*.yaml".to_string()]);
        assert_eq!(options.exclude, vec!["tests/**".to_string()]);
        assert_eq!(options.helm.release_name.as_deref(), Some("web"));
        assert_eq!(options.helm.namespace.as_deref(), Some("shop"));
        assert_eq!(options.helm.values_files, vec!["prod.yaml".to_string()]);
        assert_eq!(options.helm.values.as_deref(), Some("replicas: 3"));
        assert_eq!(options.jsonnet.main.as_deref(), Some("main.jsonnet"));
        assert_eq!(
            options.jsonnet.ext_vars.get("env"),
            Some(&JsonnetValue::String("prod".into()))
        );
        assert_eq!(
            options.jsonnet.tlas.get("replicas"),
            Some(&JsonnetValue::Code("3".into()))
        );
        assert_eq!(options.jsonnet.jpath, vec!["vendor".to_string()]);
    }

    #[test]
    fn every_policy_field_reaches_the_engine_policy() {
        let mut spec = spec();
        spec.sync_policy.prune = true;
        spec.sync_policy.allow_empty = true;
        spec.sync_policy.replace = true;
        spec.sync_policy.conflicts = ConflictPolicy::Fail;
        spec.sync_policy.propagation = Propagation::Foreground;
        spec.ignore_differences = vec![IgnoreDifference {
            kind: "ConfigMap".into(),
            managers: vec!["operator".into()],
            ..Default::default()
        }];
        let app = App::new(AppId::new("ops", "shop"), &spec);
        assert_eq!(app.destination_namespace, "shop");
        assert_eq!(app.id, AppId::new("ops", "shop"));
        assert!(app.policy.prune && app.policy.allow_empty && app.policy.replace);
        assert_eq!(app.policy.conflicts, Conflicts::Fail);
        assert_eq!(app.policy.propagation, PropagationPolicy::Foreground);
        assert_eq!(app.policy.ignore_differences, spec.ignore_differences);
        assert!(!app.policy.dry_run_all);
    }

    #[test]
    fn unusable_specs_name_the_field() {
        let mut twice = spec();
        twice.render.jsonnet = Some(JsonnetSpec {
            tlas: vec![variable("ns", "a", false), variable("ns", "b", false)],
            ..Default::default()
        });
        let err = check(&twice).expect_err("duplicate TLA").to_string();
        assert_eq!(err, "spec.render.jsonnet.tlas: \"ns\" is given twice");

        let mut bad_cel = spec();
        bad_cel.health_checks = vec![HealthCheck {
            group: "shop.example.com".into(),
            kind: "Promotion".into(),
            cel: "object.status.ready &&".into(),
        }];
        let err = check(&bad_cel).expect_err("bad CEL").to_string();
        assert!(err.starts_with("spec.healthChecks[0]: "), "{err}");

        let mut bad_pointer = spec();
        bad_pointer.ignore_differences = vec![IgnoreDifference {
            group: "apps".into(),
            kind: "Deployment".into(),
            json_pointers: vec!["spec/replicas".into()],
            ..Default::default()
        }];
        let err = check(&bad_pointer).expect_err("bad pointer").to_string();
        assert!(
            err.starts_with("spec.ignoreDifferences[0] (Deployment.apps): jsonPointers[0]"),
            "{err}"
        );
        check(&spec()).expect("the default spec is usable");
    }
}
