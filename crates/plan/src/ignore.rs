//! `ignoreDifferences`: fields of existing objects that a plan neither compares nor takes back, as in
//! Argo CD's `ignoreDifferences` with `RespectIgnoreDifferences=true`.
//!
//! A rule ([`IgnoreDifference`]) matches objects by group and kind (exact; `*` matches any group or any
//! kind; `""` is the core group) and optionally by name and namespace (exact). For a matching object
//! that exists in the cluster:
//!
//! - **JSON pointers** (RFC 6901: `/spec/replicas`, `~1` for `/` and `~0` for `~` in a key, array items
//!   by index as they stand in each object): the field is removed from both the live object and the
//!   dry-run result before they are compared, so a difference there neither makes the object an update
//!   nor shows in its diff or drift. A pointer to a field that does not exist is fine. In the object
//!   apply sends, the field is removed, so the live value stays with whoever owns it; only when Capstan
//!   itself owns it in the live object (removing it would delete it) does the applied object carry the
//!   live value instead. Git's value for an ignored field therefore never reaches an existing object.
//! - **Managers**: every field that one of these field managers owns in the live object (from
//!   `metadata.managedFields`, see [`crate::drift::owned_paths`]) is removed the same way from both
//!   sides and from the applied object (list items are matched by key; their key fields stay). With
//!   server-side apply, leaving a field out keeps the other manager's value.
//!
//! The applied object is what the plan dry-runs, so the diff shows exactly what a sync would do, and
//! what the plan hash covers. Objects that do not exist yet (creates) and replacements are applied as
//! Git has them. The identity of an object (`apiVersion`, `kind`, `metadata.name`,
//! `metadata.namespace`) cannot be ignored, and Capstan's ownership mark is set again afterwards.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;

use capstan_core::ObjectRef;
use serde_json::Value;

use crate::drift::{self, Segment};
use crate::normalize;

/// One rule of `ignoreDifferences`: the application spec's type (`capstan_api::spec`), used here as is.
pub use capstan_api::spec::IgnoreDifference;

/// A rule that cannot be used, named by its position and what it matches.
#[derive(Debug, thiserror::Error)]
#[error("ignoreDifferences[{index}] ({rule}): {problem}")]
pub struct IgnoreRuleError {
    pub index: usize,
    pub rule: String,
    pub problem: String,
}

/// Why a `jsonPointers` entry is not a usable pointer.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum PointerError {
    #[error("the empty pointer means the whole object; name a field, e.g. /spec/replicas")]
    Empty,
    #[error("{text:?} is not a JSON pointer: it must start with '/', e.g. /spec/replicas")]
    NoLeadingSlash { text: String },
    #[error("{text:?} is not a JSON pointer: '~' must be followed by 0 ('~') or 1 ('/')")]
    BadEscape { text: String },
    #[error(
        "{text:?} names the object's identity (apiVersion, kind, metadata.name, \
         metadata.namespace), which cannot be ignored"
    )]
    Identity { text: String },
}

/// An RFC 6901 JSON pointer, as its unescaped reference tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pointer(Vec<String>);

impl Pointer {
    pub fn parse(text: &str) -> Result<Self, PointerError> {
        if text.is_empty() {
            return Err(PointerError::Empty);
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(PointerError::NoLeadingSlash { text: text.into() });
        };
        let mut tokens = Vec::new();
        for raw in rest.split('/') {
            let mut token = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '~' {
                    token.push(c);
                    continue;
                }
                match chars.next() {
                    Some('0') => token.push('~'),
                    Some('1') => token.push('/'),
                    _ => {
                        return Err(PointerError::BadEscape { text: text.into() });
                    }
                }
            }
            tokens.push(token);
        }
        let pointer = Pointer(tokens);
        if pointer.is_identity() {
            return Err(PointerError::Identity { text: text.into() });
        }
        Ok(pointer)
    }

    pub fn from_segments(path: &[Segment]) -> Self {
        Pointer(
            path.iter()
                .map(|segment| match segment {
                    Segment::Key(key) => key.clone(),
                    Segment::Index(index) => index.to_string(),
                })
                .collect(),
        )
    }

    /// The pointer itself or a parent of apiVersion, kind, metadata.name or metadata.namespace.
    fn is_identity(&self) -> bool {
        let tokens: Vec<&str> = self.0.iter().map(String::as_str).collect();
        matches!(
            tokens.as_slice(),
            [] | ["apiVersion", ..]
                | ["kind", ..]
                | ["metadata"]
                | ["metadata", "name" | "namespace", ..]
        )
    }

    pub fn get<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        self.0
            .iter()
            .try_fold(value, |current, token| child(current, token))
    }

    /// The path to the field in `value`, when it exists there.
    fn segments(&self, value: &Value) -> Option<Vec<Segment>> {
        let mut current = value;
        let mut path = Vec::with_capacity(self.0.len());
        for token in &self.0 {
            path.push(match current {
                Value::Array(_) => Segment::Index(index(token)?),
                _ => Segment::Key(token.clone()),
            });
            current = child(current, token)?;
        }
        Some(path)
    }

    /// Removes the field; `None` when it was not there.
    pub fn remove(&self, value: &mut Value) -> Option<Value> {
        let (last, parents) = self.0.split_last()?;
        let mut current = value;
        for token in parents {
            current = child_mut(current, token)?;
        }
        match current {
            Value::Object(map) => map.remove(last),
            Value::Array(items) => {
                let index = index(last).filter(|i| *i < items.len())?;
                Some(items.remove(index))
            }
            _ => None,
        }
    }

    /// Sets the field, creating missing maps on the way; false when `value` has no place for it (a
    /// scalar on the way, an index past the end of a list).
    fn set(&self, value: &mut Value, new: Value) -> bool {
        let Some((last, parents)) = self.0.split_last() else {
            return false;
        };
        let mut current = value;
        for token in parents {
            if let Value::Object(map) = current {
                current = map
                    .entry(token.clone())
                    .or_insert_with(|| Value::Object(Default::default()));
            } else {
                match child_mut(current, token) {
                    Some(next) => current = next,
                    None => return false,
                }
            }
        }
        match current {
            Value::Object(map) => {
                map.insert(last.clone(), new);
                true
            }
            Value::Array(items) => match index(last).and_then(|i| items.get_mut(i)) {
                Some(slot) => {
                    *slot = new;
                    true
                }
                None => false,
            },
            _ => false,
        }
    }
}

/// An array index token: digits without a leading zero (RFC 6901); `-` (past the end) names nothing.
fn index(token: &str) -> Option<usize> {
    let digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    if !digits || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    token.parse().ok()
}

fn child<'a>(value: &'a Value, token: &str) -> Option<&'a Value> {
    match value {
        Value::Object(map) => map.get(token),
        Value::Array(items) => items.get(index(token)?),
        _ => None,
    }
}

fn child_mut<'a>(value: &'a mut Value, token: &str) -> Option<&'a mut Value> {
    match value {
        Value::Object(map) => map.get_mut(token),
        Value::Array(items) => items.get_mut(index(token)?),
        _ => None,
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for token in &self.0 {
            write!(f, "/{}", token.replace('~', "~0").replace('/', "~1"))?;
        }
        Ok(())
    }
}

/// Token by token; indices compare as numbers, so that removing in descending order never shifts an
/// index still to be removed.
impl Ord for Pointer {
    fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.0.iter().zip(&other.0) {
            let order = match (index(a), index(b)) {
                (Some(a), Some(b)) => a.cmp(&b),
                _ => a.cmp(b),
            };
            if order != Ordering::Equal {
                return order;
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

impl PartialOrd for Pointer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Removes every field at `paths` from `value`; indices refer to `value` before anything is removed.
fn remove_all(value: &mut Value, paths: &BTreeSet<Pointer>) {
    for path in paths.iter().rev() {
        path.remove(value);
    }
}

#[derive(Clone, Debug)]
struct Rule {
    group: String,
    kind: String,
    name: Option<String>,
    namespace: Option<String>,
    pointers: Vec<Pointer>,
    managers: Vec<String>,
}

impl Rule {
    fn matches(&self, object: &ObjectRef) -> bool {
        (self.group == "*" || self.group == object.group)
            && (self.kind == "*" || self.kind == object.kind)
            && self.name.as_ref().is_none_or(|name| *name == object.name)
            && self
                .namespace
                .as_ref()
                .is_none_or(|namespace| object.namespace.as_ref() == Some(namespace))
    }
}

/// Validated rules, ready to match objects.
#[derive(Clone, Debug, Default)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

impl IgnoreRules {
    /// Checks every rule; `own_manager` (Capstan's field manager) cannot be ignored, since its fields
    /// are what Git declares.
    pub fn new(rules: &[IgnoreDifference], own_manager: &str) -> Result<Self, IgnoreRuleError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let error = |problem: String| IgnoreRuleError {
                index,
                rule: rule.to_string(),
                problem,
            };
            if rule.kind.is_empty() {
                return Err(error("kind is required (\"*\" for every kind)".into()));
            }
            if rule.group.contains('/') {
                return Err(error(format!(
                    "group {:?} looks like an apiVersion; give the API group only (\"apps\", \"\" \
                     for the core group)",
                    rule.group
                )));
            }
            for (field, value) in [("name", &rule.name), ("namespace", &rule.namespace)] {
                if value.as_deref() == Some("") {
                    return Err(error(format!(
                        "{field} is empty; leave it out to match every {field}"
                    )));
                }
            }
            if rule.json_pointers.is_empty() && rule.managers.is_empty() {
                return Err(error(
                    "names no jsonPointers and no managers: it would ignore nothing".into(),
                ));
            }
            let mut pointers = Vec::with_capacity(rule.json_pointers.len());
            for (i, text) in rule.json_pointers.iter().enumerate() {
                pointers.push(
                    Pointer::parse(text)
                        .map_err(|problem| error(format!("jsonPointers[{i}]: {problem}")))?,
                );
            }
            for (i, manager) in rule.managers.iter().enumerate() {
                if manager.is_empty() {
                    return Err(error(format!("managers[{i}] is empty")));
                }
                if manager == own_manager {
                    return Err(error(format!(
                        "managers[{i}] is {own_manager:?}, Capstan's own field manager: its fields \
                         are what Git declares"
                    )));
                }
            }
            compiled.push(Rule {
                group: rule.group.clone(),
                kind: rule.kind.clone(),
                name: rule.name.clone(),
                namespace: rule.namespace.clone(),
                pointers,
                managers: rule.managers.clone(),
            });
        }
        Ok(Self { rules: compiled })
    }

    /// The union of every rule matching `object` (its namespace already defaulted).
    pub fn for_object(&self, object: &ObjectRef) -> Ignored {
        let mut ignored = Ignored::default();
        for rule in self.rules.iter().filter(|rule| rule.matches(object)) {
            ignored.pointers.extend(rule.pointers.iter().cloned());
            ignored.managers.extend(rule.managers.iter().cloned());
        }
        ignored
    }
}

/// What is ignored for one object. Sets, so the order of rules never changes a plan or its hash.
#[derive(Clone, Debug, Default)]
pub struct Ignored {
    pointers: BTreeSet<Pointer>,
    managers: BTreeSet<String>,
}

impl Ignored {
    pub fn is_empty(&self) -> bool {
        self.pointers.is_empty() && self.managers.is_empty()
    }

    /// Every ignored field of `target`: the pointers, and the fields the managers own in `live`.
    fn paths(&self, live: &Value, target: &Value) -> BTreeSet<Pointer> {
        let mut paths = self.pointers.clone();
        for manager in &self.managers {
            paths.extend(
                drift::owned_paths(live, manager, target)
                    .iter()
                    .map(|path| Pointer::from_segments(path))
                    .filter(|pointer| !pointer.is_identity()),
            );
        }
        paths
    }

    /// The object to apply to an existing object: Git's `desired` without the ignored fields, except
    /// fields only Capstan owns in `live`, which keep their live value (leaving them out would delete
    /// them).
    pub fn applied(&self, desired: &Value, live: &Value, own_manager: &str) -> Value {
        let mut out = desired.clone();
        let mut remove = BTreeSet::new();
        for manager in &self.managers {
            remove.extend(
                drift::owned_paths(live, manager, desired)
                    .iter()
                    .map(|path| Pointer::from_segments(path))
                    .filter(|pointer| !pointer.is_identity()),
            );
        }
        for pointer in &self.pointers {
            let ours = pointer
                .segments(live)
                .is_some_and(|path| drift::owned_by(live, &path, own_manager));
            match pointer.get(live) {
                Some(value) if ours => {
                    // False when Git's object has no place for it (a shorter list): then Git has no
                    // value there either.
                    pointer.set(&mut out, value.clone());
                }
                _ => {
                    remove.insert(pointer.clone());
                }
            }
        }
        remove_all(&mut out, &remove);
        out
    }

    /// `target` (the live object or the dry-run result, with `live` the live object) without the
    /// ignored fields, and the pointers of those that were there (outside status and volatile
    /// metadata, which are never compared anyway).
    pub fn strip(&self, live: &Value, target: &Value) -> (Value, Vec<Pointer>) {
        let paths = self.paths(live, target);
        let compared = normalize::comparable(target);
        let present = paths
            .iter()
            .filter(|path| path.get(&compared).is_some())
            .cloned()
            .collect();
        let mut out = target.clone();
        remove_all(&mut out, &paths);
        (out, present)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pointer(text: &str) -> Pointer {
        Pointer::parse(text).expect("pointer")
    }

    fn rule(group: &str, kind: &str, pointers: &[&str], managers: &[&str]) -> IgnoreDifference {
        IgnoreDifference {
            group: group.into(),
            kind: kind.into(),
            json_pointers: pointers.iter().map(|p| p.to_string()).collect(),
            managers: managers.iter().map(|m| m.to_string()).collect(),
            ..Default::default()
        }
    }

    fn deployment(name: &str, namespace: &str) -> ObjectRef {
        ObjectRef {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            namespace: Some(namespace.into()),
            name: name.into(),
        }
    }

    #[test]
    fn pointers_unescape_and_print_back() {
        let p = pointer("/metadata/annotations/example.com~1a~0b");
        assert_eq!(
            p.0,
            vec!["metadata", "annotations", "example.com/a~b"]
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        );
        assert_eq!(p.to_string(), "/metadata/annotations/example.com~1a~0b");
        let value = json!({"metadata": {"annotations": {"example.com/a~b": "x"}}});
        assert_eq!(p.get(&value), Some(&json!("x")));
    }

    #[test]
    fn malformed_pointers_are_refused_with_the_reason() {
        for (text, reason) in [
            ("spec/replicas", "must start with '/'"),
            ("/metadata/annotations/a~2", "'~' must be followed by 0"),
            ("/spec/x~", "'~' must be followed by 0"),
            ("", "the empty pointer"),
            ("/metadata/name", "identity"),
            ("/metadata", "identity"),
            ("/kind", "identity"),
        ] {
            let err = Pointer::parse(text).expect_err(text);
            assert!(err.to_string().contains(reason), "{text}: {err}");
        }
        // Not identity: a label or annotation under metadata.
        assert!(Pointer::parse("/metadata/labels/app").is_ok());
    }

    #[test]
    fn removal_handles_missing_fields_lists_and_index_order() {
        let mut value = json!({"spec": {"items": ["a", "b", "c", "d"], "x": 1}});
        assert_eq!(pointer("/spec/missing/deep").remove(&mut value), None);
        assert_eq!(pointer("/spec/items/-").remove(&mut value), None);
        assert_eq!(pointer("/spec/items/01").remove(&mut value), None);
        assert_eq!(pointer("/spec/x/y").remove(&mut value), None);
        // Indices name items as they stand before anything is removed, whatever the order given.
        let paths: BTreeSet<Pointer> = ["/spec/items/1", "/spec/items/3", "/spec/items/10"]
            .into_iter()
            .map(pointer)
            .collect();
        remove_all(&mut value, &paths);
        assert_eq!(value, json!({"spec": {"items": ["a", "c"], "x": 1}}));
    }

    #[test]
    fn set_creates_maps_but_not_list_items() {
        let mut value = json!({"spec": {"list": [1]}});
        assert!(pointer("/spec/a/b").set(&mut value, json!(2)));
        assert!(pointer("/spec/list/0").set(&mut value, json!(9)));
        assert!(!pointer("/spec/list/3").set(&mut value, json!(9)));
        assert_eq!(value, json!({"spec": {"a": {"b": 2}, "list": [9]}}));
    }

    #[test]
    fn rules_match_group_kind_name_and_namespace() {
        let mut named = rule("apps", "Deployment", &["/spec/replicas"], &[]);
        named.name = Some("web".into());
        named.namespace = Some("shop".into());
        let rules = IgnoreRules::new(
            &[
                named,
                rule("", "ConfigMap", &["/data/a"], &[]),
                rule("*", "*", &[], &["hpa"]),
            ],
            "capstan",
        )
        .expect("rules");
        let web = rules.for_object(&deployment("web", "shop"));
        assert_eq!(web.pointers, [pointer("/spec/replicas")].into());
        assert_eq!(web.managers, ["hpa".to_string()].into());
        let other = rules.for_object(&deployment("api", "shop"));
        assert!(other.pointers.is_empty(), "name filter");
        assert!(
            rules
                .for_object(&deployment("web", "other"))
                .pointers
                .is_empty(),
            "namespace filter"
        );
        let mut core = deployment("settings", "shop");
        core.group = String::new();
        core.kind = "ConfigMap".into();
        assert_eq!(
            rules.for_object(&core).pointers,
            [pointer("/data/a")].into()
        );
        core.group = "apps".into();
        assert!(
            rules.for_object(&core).pointers.is_empty(),
            "group is exact"
        );
    }

    #[test]
    fn bad_rules_are_named_by_position() {
        let cases = [
            (
                rule("apps", "Deployment", &["spec/replicas"], &[]),
                "jsonPointers[0]",
            ),
            (
                rule("apps/v1", "Deployment", &["/spec"], &[]),
                "looks like an apiVersion",
            ),
            (rule("apps", "", &["/spec"], &[]), "kind is required"),
            (rule("apps", "Deployment", &[], &[]), "would ignore nothing"),
            (
                rule("apps", "Deployment", &[], &["capstan"]),
                "own field manager",
            ),
        ];
        for (bad, reason) in cases {
            let rules = [rule("", "ConfigMap", &["/data"], &[]), bad];
            let err = IgnoreRules::new(&rules, "capstan")
                .expect_err(reason)
                .to_string();
            assert!(
                err.starts_with("ignoreDifferences[1] (") && err.contains(reason),
                "{err}"
            );
        }
        let err = IgnoreRules::new(&[rule("apps", "Deployment", &["x"], &[])], "capstan")
            .expect_err("bad")
            .to_string();
        assert!(err.contains("(Deployment.apps)"), "{err}");
    }

    fn live() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "managedFields": [
                {"manager": "capstan", "operation": "Apply", "fieldsV1": {"f:spec": {
                    "f:paused": {}, "f:template": {"f:spec": {"f:containers": {
                        "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}},
                {"manager": "kubectl", "operation": "Update", "subresource": "scale",
                 "fieldsV1": {"f:spec": {"f:replicas": {}}}},
                {"manager": "hpa", "operation": "Update", "fieldsV1": {"f:spec": {
                    "f:template": {"f:spec": {"f:containers": {
                        "k:{\"name\":\"web\"}": {"f:resources": {}}}}}}}}
            ]},
            "spec": {"replicas": 4, "paused": false, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1.27", "resources": {"limits": {"cpu": "2"}}}]}}}
        })
    }

    fn git() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "paused": true, "template": {"spec": {"containers": [
                {"name": "sidecar", "image": "envoy"},
                {"name": "web", "image": "nginx:1.28", "resources": {"limits": {"cpu": "1"}}}]}}}
        })
    }

    #[test]
    fn applied_object_leaves_ignored_fields_to_their_owners() {
        let rules = IgnoreRules::new(
            &[rule(
                "apps",
                "Deployment",
                &["/spec/replicas", "/spec/paused", "/spec/absent"],
                &["hpa"],
            )],
            "capstan",
        )
        .expect("rules");
        let ignored = rules.for_object(&deployment("web", "shop"));
        let applied = ignored.applied(&git(), &live(), "capstan");
        assert_eq!(
            applied,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                // replicas: owned by kubectl, left out; paused: only Capstan owns it, so leaving it
                // out would delete it: the live value is kept.
                "spec": {"paused": false, "template": {"spec": {"containers": [
                    {"name": "sidecar", "image": "envoy"},
                    // resources belongs to hpa (matched by the item's key, not its position); the
                    // key field name stays.
                    {"name": "web", "image": "nginx:1.28"}]}}}
            })
        );
    }

    #[test]
    fn strip_removes_ignored_fields_and_reports_those_present() {
        let rules = IgnoreRules::new(
            &[rule(
                "apps",
                "*",
                &["/spec/replicas", "/status/x", "/nothing"],
                &["hpa"],
            )],
            "capstan",
        )
        .expect("rules");
        let ignored = rules.for_object(&deployment("web", "shop"));
        let mut with_status = live();
        with_status["status"] = json!({"x": 1});
        let (stripped, present) = ignored.strip(&live(), &with_status);
        assert_eq!(stripped.pointer("/spec/replicas"), None);
        assert_eq!(
            stripped.pointer("/spec/template/spec/containers/0"),
            Some(&json!({"name": "web", "image": "nginx:1.27"}))
        );
        assert!(stripped.pointer("/metadata/managedFields").is_some());
        let present: Vec<String> = present.iter().map(ToString::to_string).collect();
        assert_eq!(
            present,
            vec![
                "/spec/replicas",
                "/spec/template/spec/containers/0/resources"
            ],
            "status is never compared, /nothing is not there"
        );
    }

    #[test]
    fn the_order_of_rules_does_not_change_the_result() {
        let a = rule(
            "apps",
            "Deployment",
            &["/spec/paused", "/spec/replicas"],
            &[],
        );
        let b = rule(
            "*",
            "Deployment",
            &["/spec/template/spec/containers/1/image"],
            &["hpa"],
        );
        let forward = IgnoreRules::new(&[a.clone(), b.clone()], "capstan").expect("rules");
        let backward = IgnoreRules::new(&[b, a], "capstan").expect("rules");
        let object = deployment("web", "shop");
        let (one, two) = (forward.for_object(&object), backward.for_object(&object));
        assert_eq!(
            one.applied(&git(), &live(), "capstan"),
            two.applied(&git(), &live(), "capstan")
        );
        assert_eq!(one.strip(&live(), &git()), two.strip(&live(), &git()));
    }
}
