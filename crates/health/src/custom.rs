//! Custom health rules: one CEL expression per group/kind, for custom resources whose controllers do
//! not follow the `Ready`/`Reconciling`/`Stalled` conventions, or to override a built-in rule.
//!
//! An expression sees the whole object as the map `object` and returns either a bool (true → Current,
//! false → InProgress) or a map `{"status": "Current"|"InProgress"|"Failed", "message": "..."}`:
//!
//! ```text
//! has(object.status) && has(object.status.phase) && object.status.phase == "Running"
//!
//! !has(object.status) || !has(object.status.state) ? false
//!   : object.status.state == "ERROR" ? {"status": "Failed", "message": object.status.error}
//!   : object.status.state == "READY" ? true
//!   : {"status": "InProgress", "message": "state " + object.status.state}
//! ```
//!
//! Reading a field that is not there is an evaluation error (the verdict is then `Unknown`, with the
//! error), so guard optional fields with `has()`: right after an apply, `status` is usually missing.
//!
//! Expressions compile once, in [`HealthRules::add`], so a typo is reported when the rules are
//! loaded, naming the group/kind, not in the middle of a sync. The interpreter is `cel`
//! with its standard functions (`has`, `size`, `matches`, `all`, `exists`, `map`, `filter`, ...);
//! timestamps and durations are not enabled.

use std::collections::HashMap;
use std::sync::Arc;

use cel::objects::{Key, Map};
use cel::{Context, Env, Program, Value};
use kube::api::DynamicObject;

use crate::error::HealthError;
use crate::{Health, HealthStatus, fields};

struct CustomRule {
    program: Program,
}

/// Health rules: custom CEL rules per group/kind, then the built-in kstatus rules ([`crate::assess`]).
pub struct HealthRules {
    /// Keyed by (group, kind); the core group is "".
    custom: HashMap<(String, String), CustomRule>,
    /// The standard CEL environment, built once: every evaluation would otherwise rebuild it.
    env: Arc<Env>,
}

impl Default for HealthRules {
    fn default() -> Self {
        Self {
            custom: HashMap::new(),
            env: Arc::new(Env::stdlib()),
        }
    }
}

impl std::fmt::Debug for HealthRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kinds: Vec<String> = self
            .custom
            .keys()
            .map(|(group, kind)| crate::error::group_kind(group, kind))
            .collect();
        kinds.sort();
        f.debug_struct("HealthRules")
            .field("custom", &kinds)
            .finish()
    }
}

impl HealthRules {
    /// Built-in rules only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Compiles `expression` as the rule for `group`/`kind` (group "" for the core group).
    pub fn add(&mut self, group: &str, kind: &str, expression: &str) -> Result<(), HealthError> {
        let key = (group.to_string(), kind.to_string());
        if self.custom.contains_key(&key) {
            return Err(HealthError::DuplicateRule {
                group: key.0,
                kind: key.1,
            });
        }
        // cel-interpreter 0.10's parser panicked on input like `x ==`; `cel` fixed the known cases,
        // but a rule file is user input, so any panic left becomes the same error as a parse failure.
        let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.env.compile(expression)
        }));
        let program = match compiled {
            Ok(Ok(program)) => program,
            Ok(Err(errors)) => {
                return Err(HealthError::InvalidExpression {
                    group: key.0,
                    kind: key.1,
                    expression: expression.to_string(),
                    message: errors.to_string().trim().to_string(),
                });
            }
            Err(_) => {
                return Err(HealthError::InvalidExpression {
                    group: key.0,
                    kind: key.1,
                    expression: expression.to_string(),
                    message: "the CEL parser could not read this expression".to_string(),
                });
            }
        };
        self.custom.insert(key, CustomRule { program });
        Ok(())
    }

    /// Rules from (group, kind, expression) triples; the first bad one is the error.
    pub fn from_rules<'a>(
        rules: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Result<Self, HealthError> {
        let mut this = Self::new();
        for (group, kind, expression) in rules {
            this.add(group, kind, expression)?;
        }
        Ok(this)
    }

    /// The verdict for `object`: Terminating when it is being deleted (a fact no rule can overrule),
    /// else its custom rule if there is one, else the built-in rules. A custom rule that fails on this
    /// object gives `Unknown` with the error as message: the wait goes on and shows why.
    pub fn assess(&self, object: &DynamicObject) -> Health {
        if object.metadata.deletion_timestamp.is_some() {
            return crate::assess(object);
        }
        match self.evaluate_custom(object) {
            Some(Ok(health)) => health,
            Some(Err(error)) => Health::new(HealthStatus::Unknown, error.to_string()),
            None => crate::assess(object),
        }
    }

    /// The custom rule's verdict alone: `None` when no custom rule covers this object's group/kind.
    pub fn evaluate_custom(&self, object: &DynamicObject) -> Option<Result<Health, HealthError>> {
        let (group, kind) = fields::group_kind(object);
        let rule = self.custom.get(&(group.to_string(), kind.to_string()))?;
        Some(evaluate(&self.env, rule, group, kind, object))
    }
}

fn evaluate(
    env: &Arc<Env>,
    rule: &CustomRule,
    group: &str,
    kind: &str,
    object: &DynamicObject,
) -> Result<Health, HealthError> {
    let evaluation_error = |message: String| HealthError::Evaluation {
        group: group.to_string(),
        kind: kind.to_string(),
        message,
    };
    let json = serde_json::to_value(object).map_err(|e| evaluation_error(e.to_string()))?;
    let mut context = Context::with_env(Arc::clone(env));
    context.add_variable_from_value("object", to_cel(&json));
    // As with compiling: a panic inside the interpreter on a user's expression is that rule's error,
    // not the end of the sync.
    let executed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rule.program.execute(&context)
    }));
    let result = match executed {
        Ok(result) => result.map_err(|e| evaluation_error(e.to_string()))?,
        Err(_) => return Err(evaluation_error("the CEL interpreter failed".to_string())),
    };
    interpret(&result).ok_or_else(|| HealthError::InvalidResult {
        group: group.to_string(),
        kind: kind.to_string(),
        got: describe(&result),
    })
}

/// A bool or a `{status, message}` map as a verdict; `None` for anything else.
fn interpret(result: &Value) -> Option<Health> {
    match result {
        Value::Bool(true) => Some(Health::current("custom health rule passed")),
        Value::Bool(false) => Some(Health::in_progress("custom health rule not yet satisfied")),
        Value::Map(map) => {
            let text = |key: &str| match map.get(&Key::from(key)) {
                Some(Value::String(s)) => Some(s.as_str().to_string()),
                _ => None,
            };
            let status = match text("status")?.as_str() {
                "Current" => HealthStatus::Current,
                "InProgress" => HealthStatus::InProgress,
                "Failed" => HealthStatus::Failed,
                _ => return None,
            };
            // A message that is there but not a string is a mistake worth reporting, not hiding.
            let message = match map.get(&Key::from("message")) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.as_str().to_string(),
                Some(_) => return None,
            };
            Some(Health::new(status, message))
        }
        _ => None,
    }
}

/// A short rendering of a CEL value for error messages.
fn describe(value: &Value) -> String {
    match value {
        Value::Map(map) => {
            let mut entries: Vec<String> = map
                .map
                .iter()
                .map(|(k, v)| format!("{}: {}", describe(&Value::from(k)), describe(v)))
                .collect();
            entries.sort();
            format!("{{{}}}", entries.join(", "))
        }
        Value::List(items) => format!(
            "[{}]",
            items.iter().map(describe).collect::<Vec<_>>().join(", ")
        ),
        Value::String(s) => format!("{:?}", s.as_str()),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => format!("{u}u"),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".to_string(),
        Value::Bytes(_) => "bytes".to_string(),
        Value::Function(name, _) => format!("function {name}"),
        other => format!("{:?}", other.type_of()),
    }
}

/// JSON → CEL. Integers stay `int` (not `uint`) whenever they fit, so `object.spec.replicas == 3`
/// compares like with like.
fn to_cel(value: &serde_json::Value) -> Value {
    use serde_json::Value as Json;
    match value {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Int(i),
            (None, Some(u), _) => Value::UInt(u),
            (None, None, Some(f)) => Value::Float(f),
            (None, None, None) => Value::Null,
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Json::Object(entries) => Value::Map(Map {
            map: Arc::new(
                entries
                    .iter()
                    .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                    .collect(),
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::object;
    use serde_json::json;

    fn database(status: serde_json::Value) -> DynamicObject {
        object(json!({
            "apiVersion": "db.example.com/v1", "kind": "Database",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {"replicas": 3}, "status": status
        }))
    }

    const PHASE_RULE: &str = r#"
        !has(object.status.phase) ? {"status": "InProgress", "message": "no phase yet"}
        : object.status.phase == "Ready" ? {"status": "Current", "message": "database ready"}
        : object.status.phase == "Error" ? {"status": "Failed", "message": object.status.error}
        : {"status": "InProgress", "message": "phase " + object.status.phase}
    "#;

    fn rules() -> HealthRules {
        HealthRules::from_rules([("db.example.com", "Database", PHASE_RULE)])
            .expect("the rule compiles")
    }

    #[test]
    fn map_results_give_status_and_message() {
        let rules = rules();
        assert_eq!(
            rules.assess(&database(json!({"phase": "Ready"}))),
            Health::current("database ready")
        );
        assert_eq!(
            rules.assess(&database(json!({"phase": "Error", "error": "disk full"}))),
            Health::failed("disk full")
        );
        assert_eq!(
            rules.assess(&database(json!({"phase": "Provisioning"}))),
            Health::in_progress("phase Provisioning")
        );
        assert_eq!(
            rules.assess(&database(json!({}))),
            Health::in_progress("no phase yet")
        );
    }

    #[test]
    fn bool_results_and_integer_comparison() {
        let rules = HealthRules::from_rules([(
            "db.example.com",
            "Database",
            "has(object.status.readyReplicas) && object.status.readyReplicas == object.spec.replicas",
        )])
        .expect("compiles");
        assert!(
            rules
                .assess(&database(json!({"readyReplicas": 3})))
                .is_current()
        );
        assert_eq!(
            rules.assess(&database(json!({"readyReplicas": 2}))).status,
            HealthStatus::InProgress
        );
    }

    #[test]
    fn custom_rules_come_before_built_ins() {
        // A Ready=False condition would make the built-in rule say InProgress.
        let o = database(
            json!({"conditions": [{"type": "Ready", "status": "False"}], "phase": "Ready"}),
        );
        assert_eq!(crate::assess(&o).status, HealthStatus::InProgress);
        assert_eq!(rules().assess(&o), Health::current("database ready"));
        // Other kinds still get the built-in rules.
        let ns =
            object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}));
        assert_eq!(rules().assess(&ns), Health::current("Namespace is active"));
        assert!(rules().evaluate_custom(&ns).is_none());
    }

    #[test]
    fn deletion_is_not_up_to_the_rule() {
        let mut o = database(json!({"phase": "Ready"}));
        o.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-01-01T00:00:00Z".parse().expect("timestamp"),
        ));
        assert_eq!(rules().assess(&o).status, HealthStatus::Terminating);
    }

    #[test]
    fn bad_expressions_name_the_kind_and_the_cel_error() {
        let error =
            HealthRules::from_rules([("db.example.com", "Database", "object.status.phase ==")])
                .expect_err("does not compile");
        assert!(
            matches!(&error, HealthError::InvalidExpression { group, kind, .. }
                if group == "db.example.com" && kind == "Database"),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.starts_with(
                "custom health rule for Database.db.example.com: invalid CEL expression \"object.status.phase ==\": ERROR: <input>:1:23: Syntax error: mismatched input '<EOF>'"
            ),
            "{text}"
        );

        let core = HealthRules::from_rules([("", "Pod", "(")]).expect_err("does not compile");
        assert!(
            core.to_string().starts_with("custom health rule for Pod: invalid CEL expression \"(\": ERROR: <input>:1:2: Syntax error"),
            "{core}"
        );
    }

    #[test]
    fn incomplete_expressions_are_errors_not_panics() {
        // Each of these panicked inside cel-interpreter 0.10's parser.
        for expression in ["1 +", "(", ")", ".", "/", "{\"a\": }", "'abc", "a.b("] {
            let result = HealthRules::from_rules([("db.example.com", "Database", expression)]);
            let Err(HealthError::InvalidExpression { message, .. }) = result else {
                panic!("{expression}: expected a compile error, got {result:?}");
            };
            assert!(message.contains("Syntax error"), "{expression}: {message}");
        }
    }

    #[test]
    fn duplicate_rules_are_refused() {
        let error = HealthRules::from_rules([
            ("db.example.com", "Database", "true"),
            ("db.example.com", "Database", "false"),
        ])
        .expect_err("duplicate");
        assert_eq!(
            error.to_string(),
            "custom health rule for Database.db.example.com is defined twice"
        );
    }

    #[test]
    fn evaluation_errors_become_unknown_with_the_reason() {
        let rules = HealthRules::from_rules([(
            "db.example.com",
            "Database",
            "object.status.phase == 'Ready'",
        )])
        .expect("compiles");
        let health = rules.assess(&database(json!({})));
        assert_eq!(health.status, HealthStatus::Unknown);
        assert_eq!(
            health.message,
            "custom health rule for Database.db.example.com failed: No such key: phase"
        );
        assert!(matches!(
            rules.evaluate_custom(&database(json!({}))),
            Some(Err(HealthError::Evaluation { .. }))
        ));
    }

    #[test]
    fn results_of_the_wrong_shape_are_errors() {
        for (expression, got) in [
            ("object.spec.replicas", "3"),
            (r#"{"status": "Healthy"}"#, r#"{"status": "Healthy"}"#),
            (
                r#"{"status": "Failed", "message": 7}"#,
                r#"{"message": 7, "status": "Failed"}"#,
            ),
            ("[1, 'a']", r#"[1, "a"]"#),
        ] {
            let rules = HealthRules::from_rules([("db.example.com", "Database", expression)])
                .expect("compiles");
            let result = rules.evaluate_custom(&database(json!({})));
            let Some(Err(error)) = result else {
                panic!("{expression}: expected an error, got {result:?}");
            };
            assert_eq!(
                error,
                HealthError::InvalidResult {
                    group: "db.example.com".into(),
                    kind: "Database".into(),
                    got: got.into()
                },
                "{expression}"
            );
            assert!(error.to_string().contains("expected a bool or a map"));
        }
    }

    #[test]
    fn a_message_may_be_left_out() {
        let rules =
            HealthRules::from_rules([("db.example.com", "Database", r#"{"status": "Failed"}"#)])
                .expect("compiles");
        assert_eq!(rules.assess(&database(json!({}))), Health::failed(""));
    }

    #[test]
    fn has_guards_missing_fields_and_matches_is_available() {
        let rules = HealthRules::from_rules([(
            "db.example.com",
            "Database",
            "has(object.status) && has(object.status.endpoint) && object.status.endpoint.matches('^postgres://')",
        )])
        .expect("compiles");
        let mut no_status = database(json!({}));
        no_status
            .data
            .as_object_mut()
            .expect("object")
            .remove("status");
        assert_eq!(
            rules.assess(&no_status),
            Health::in_progress("custom health rule not yet satisfied")
        );
        assert!(
            rules
                .assess(&database(json!({"endpoint": "postgres://orders:5432"})))
                .is_current()
        );
        assert!(
            !rules
                .assess(&database(json!({"endpoint": "mysql://x"})))
                .is_current()
        );
    }

    #[test]
    fn rules_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<HealthRules>();
    }
}
