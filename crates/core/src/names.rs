//! Kubernetes' rules for object names, namespaces and API versions, checked before a request is
//! made, and the escaping of URL path segments.
//!
//! Names and namespaces end up in request URLs (`/api/v1/namespaces/{namespace}/configmaps/{name}`).
//! A name like `a?fieldManager=x&force=true#` would otherwise end the path early and replace the
//! request's own query (a dry-run becoming a real write). Two defences, both here:
//!
//! - [`object_name`], [`namespace`] and [`api_version`] refuse what the API server would refuse
//!   anyway, before anything is sent. The rule per kind ([`name_rule`]) is the strictest one that never
//!   refuses a name the API server accepts: built-in kinds whose validation is known to be a DNS-1123
//!   subdomain or label get that rule; every other kind (RBAC, Events, custom and aggregated
//!   resources, kinds unknown here) gets [`Rule::PathSegment`], which refuses only what can never be
//!   one URL path segment.
//! - [`escape_segment`] percent-encodes everything but RFC 3986's unreserved characters, for the
//!   names that pass (an RBAC name may hold `:` or a space).
//!
//! Pure functions; every error names the value it refuses.

use std::borrow::Cow;
use std::fmt;

/// One of Kubernetes' name grammars (`k8s.io/apimachinery/pkg/util/validation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// `IsDNS1123Label`: at most 63 of `[a-z0-9-]`, starting and ending with a letter or digit.
    /// Namespaces, Services (a DNS-1035 label before Kubernetes 1.34's relaxed Service names; a label
    /// is never stricter) and API versions.
    Dns1123Label,
    /// `IsDNS1123Subdomain`: at most 253 characters, DNS-1123 labels (of any length) joined by `.`.
    /// Most built-in kinds, and API groups.
    Dns1123Subdomain,
    /// What can be one URL path segment: not empty, not `.` or `..`, without `/`, `%`, `?`, `#` or
    /// control characters (apimachinery's `IsValidPathSegmentName`, plus the characters that would end
    /// the path). Every kind not known to be stricter.
    PathSegment,
}

impl Rule {
    fn max_len(self) -> Option<usize> {
        match self {
            Rule::Dns1123Label => Some(63),
            Rule::Dns1123Subdomain => Some(253),
            Rule::PathSegment => None,
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Dns1123Label => {
                "DNS-1123 label (at most 63 lowercase letters, digits and '-', starting and ending \
                 with a letter or digit)"
            }
            Rule::Dns1123Subdomain => {
                "DNS-1123 subdomain (at most 253 characters: lowercase letters, digits, '-' and '.', \
                 each dot-separated part starting and ending with a letter or digit)"
            }
            Rule::PathSegment => {
                "name (not empty, '.' or '..', and without '/', '%', '?', '#' or control characters)"
            }
        })
    }
}

/// What is wrong with a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    Empty,
    TooLong {
        length: usize,
        max: usize,
    },
    /// A character the rule does not allow, at a character position (0-based).
    Character {
        character: char,
        position: usize,
    },
    /// A (dot-separated part of a) DNS name starts or ends with something else than a letter or
    /// digit, or is empty.
    Boundary,
    /// `.` or `..`: the path would walk up instead of naming an object.
    DotSegment,
    /// A CustomResourceDefinition not named `<spec.names.plural>.<spec.group>`.
    NotPluralDotGroup {
        expected: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Empty => f.write_str("it is empty"),
            Problem::TooLong { length, max } => {
                write!(f, "it has {length} characters, at most {max} are allowed")
            }
            Problem::Character {
                character,
                position,
            } => write!(f, "{character:?} at position {position} is not allowed"),
            Problem::Boundary => f.write_str(
                "each dot-separated part must be non-empty and start and end with a lowercase \
                 letter or digit",
            ),
            Problem::DotSegment => f.write_str("'.' and '..' cannot name an object"),
            Problem::NotPluralDotGroup { expected } => write!(
                f,
                "a CustomResourceDefinition must be named <spec.names.plural>.<spec.group>: {}",
                shown(expected)
            ),
        }
    }
}

/// A name, namespace or API version Kubernetes would refuse, or that cannot be put into a URL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} is not a valid {rule}: {problem}", shown(value))]
pub struct NameError {
    /// The refused value, as it was given.
    pub value: String,
    pub rule: Rule,
    pub problem: Problem,
}

/// A value for messages: quoted with escapes (control characters stay visible), cut after 80
/// characters with the full length said.
pub fn shown(value: &str) -> String {
    const MAX: usize = 80;
    let length = value.chars().count();
    if length <= MAX {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(MAX).collect();
    format!("{:?}… ({length} characters)", head)
}

/// The rule Kubernetes applies to `metadata.name` of a `group`/`kind` (group empty for the core
/// group), as far as Capstan relies on it: built-in kinds whose API server validation is known to be a
/// DNS-1123 subdomain (or label) get it; RBAC kinds (path-segment names like `system:node`),
/// Events, APIServices (`v1.` for the core group), custom resources (their group could also be an
/// aggregated API with its own rules) and every kind unknown here get [`Rule::PathSegment`].
pub fn name_rule(group: &str, kind: &str) -> Rule {
    match (group, kind) {
        ("", "Namespace" | "Service") => Rule::Dns1123Label,
        (
            "",
            "ConfigMap"
            | "Secret"
            | "Pod"
            | "PodTemplate"
            | "ServiceAccount"
            | "ReplicationController"
            | "PersistentVolume"
            | "PersistentVolumeClaim"
            | "Endpoints"
            | "LimitRange"
            | "ResourceQuota"
            | "Node",
        )
        | (
            "apps",
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "ControllerRevision",
        )
        | ("batch", "Job" | "CronJob")
        | ("networking.k8s.io", "Ingress" | "IngressClass" | "NetworkPolicy")
        | ("policy", "PodDisruptionBudget")
        | ("autoscaling", "HorizontalPodAutoscaler")
        | ("storage.k8s.io", "StorageClass")
        | ("scheduling.k8s.io", "PriorityClass")
        | ("apiextensions.k8s.io", "CustomResourceDefinition") => Rule::Dns1123Subdomain,
        _ => Rule::PathSegment,
    }
}

/// Checks `metadata.name` of a `group`/`kind` against [`name_rule`].
pub fn object_name(group: &str, kind: &str, name: &str) -> Result<(), NameError> {
    check(name, name_rule(group, kind))
}

/// Checks a CustomResourceDefinition's name against what the API server requires of it:
/// `<spec.names.plural>.<spec.group>` (and a DNS-1123 subdomain, checked by [`object_name`]).
pub fn crd_name(name: &str, plural: &str, group: &str) -> Result<(), NameError> {
    let expected = format!("{plural}.{group}");
    if name == expected {
        Ok(())
    } else {
        Err(NameError {
            value: name.to_string(),
            rule: Rule::Dns1123Subdomain,
            problem: Problem::NotPluralDotGroup { expected },
        })
    }
}

/// Checks a namespace: a DNS-1123 label.
pub fn namespace(namespace: &str) -> Result<(), NameError> {
    check(namespace, Rule::Dns1123Label)
}

/// Checks an `apiVersion` (`v1`, `apps/v1`): the group (when there is one) a DNS-1123 subdomain, the
/// version a DNS-1123 label. Both become URL path segments of discovery requests.
pub fn api_version(api_version: &str) -> Result<(), NameError> {
    let (group, version) = crate::split_api_version(api_version);
    if api_version.contains('/') {
        check(group, Rule::Dns1123Subdomain)?;
    }
    check(version, Rule::Dns1123Label)
}

/// Checks `value` against `rule`.
pub fn check(value: &str, rule: Rule) -> Result<(), NameError> {
    problem(value, rule).map_or(Ok(()), |problem| {
        Err(NameError {
            value: value.to_string(),
            rule,
            problem,
        })
    })
}

fn problem(value: &str, rule: Rule) -> Option<Problem> {
    if value.is_empty() {
        return Some(Problem::Empty);
    }
    if let Some(max) = rule.max_len() {
        // DNS rules allow ASCII only, so bytes are characters wherever the length matters.
        let length = value.chars().count();
        if length > max {
            return Some(Problem::TooLong { length, max });
        }
    }
    let allowed = |c: char| match rule {
        Rule::Dns1123Label => c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        Rule::Dns1123Subdomain => {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
        }
        Rule::PathSegment => !matches!(c, '/' | '%' | '?' | '#') && !c.is_control(),
    };
    if let Some((position, character)) = value.chars().enumerate().find(|(_, c)| !allowed(*c)) {
        return Some(Problem::Character {
            character,
            position,
        });
    }
    match rule {
        Rule::PathSegment => matches!(value, "." | "..").then_some(Problem::DotSegment),
        Rule::Dns1123Label | Rule::Dns1123Subdomain => {
            let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
            value
                .split('.')
                .any(|part| !alnum(part.chars().next()) || !alnum(part.chars().last()))
                .then_some(Problem::Boundary)
        }
    }
}

/// `value` as one URL path segment: every byte outside RFC 3986's unreserved set (`A-Z a-z 0-9 - . _
/// ~`) percent-encoded, so nothing in it can end the segment, the path or start a query. The API
/// server decodes it back to `value`. Borrowed when nothing needs escaping (every valid DNS name).
pub fn escape_segment(value: &str) -> Cow<'_, str> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if value.bytes().all(unreserved) {
        return Cow::Borrowed(value);
    }
    let mut escaped = String::with_capacity(value.len() * 3);
    for byte in value.bytes() {
        if unreserved(byte) {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem_of(value: &str, rule: Rule) -> Option<Problem> {
        check(value, rule).err().map(|e| e.problem)
    }

    fn character(character: char, position: usize) -> Option<Problem> {
        Some(Problem::Character {
            character,
            position,
        })
    }

    #[test]
    fn dns_1123_labels() {
        let long = "a".repeat(64);
        let cases: &[(&str, Option<Problem>)] = &[
            ("a", None),
            ("0", None),
            ("shop-1", None),
            (&long[..63], None),
            ("", Some(Problem::Empty)),
            (
                &long,
                Some(Problem::TooLong {
                    length: 64,
                    max: 63,
                }),
            ),
            ("A", character('A', 0)),
            ("x?y", character('?', 1)),
            ("a.b", character('.', 1)),
            ("a_b", character('_', 1)),
            ("-a", Some(Problem::Boundary)),
            ("a-", Some(Problem::Boundary)),
            ("é", character('é', 0)),
        ];
        for (value, expected) in cases {
            assert_eq!(
                &problem_of(value, Rule::Dns1123Label),
                expected,
                "{value:?}"
            );
        }
    }

    #[test]
    fn dns_1123_subdomains() {
        let long = "a".repeat(254);
        let cases: &[(&str, Option<Problem>)] = &[
            ("a", None),
            ("web.example.com", None),
            ("a-b.c-d", None),
            (&long[..253], None),
            ("", Some(Problem::Empty)),
            (
                &long,
                Some(Problem::TooLong {
                    length: 254,
                    max: 253,
                }),
            ),
            ("a?fieldManager=x&force=true#", character('?', 1)),
            ("a/b", character('/', 1)),
            ("a%2Fb", character('%', 1)),
            ("A", character('A', 0)),
            ("a b", character(' ', 1)),
            ("..", Some(Problem::Boundary)),
            (".", Some(Problem::Boundary)),
            ("a..b", Some(Problem::Boundary)),
            (".a", Some(Problem::Boundary)),
            ("a.", Some(Problem::Boundary)),
            ("a.-b", Some(Problem::Boundary)),
        ];
        for (value, expected) in cases {
            assert_eq!(
                &problem_of(value, Rule::Dns1123Subdomain),
                expected,
                "{value:?}"
            );
        }
    }

    #[test]
    fn path_segments() {
        let cases: &[(&str, Option<Problem>)] = &[
            ("system:node", None),
            ("system:controller:job-controller", None),
            ("Mixed Case é", None),
            ("...", None),
            ("a.", None),
            ("v1.", None),
            ("", Some(Problem::Empty)),
            (".", Some(Problem::DotSegment)),
            ("..", Some(Problem::DotSegment)),
            ("a/b", character('/', 1)),
            ("a%2Fb", character('%', 1)),
            ("a?b", character('?', 1)),
            ("a#", character('#', 1)),
            ("a\nb", character('\n', 1)),
            ("\u{7f}", character('\u{7f}', 0)),
            ("a\u{85}", character('\u{85}', 1)),
        ];
        for (value, expected) in cases {
            assert_eq!(&problem_of(value, Rule::PathSegment), expected, "{value:?}");
        }
    }

    #[test]
    fn rules_per_kind() {
        assert_eq!(name_rule("", "ConfigMap"), Rule::Dns1123Subdomain);
        assert_eq!(name_rule("apps", "Deployment"), Rule::Dns1123Subdomain);
        assert_eq!(name_rule("", "Namespace"), Rule::Dns1123Label);
        assert_eq!(name_rule("", "Service"), Rule::Dns1123Label);
        // Looser on the server: never refused here for what it accepts.
        for (group, kind) in [
            ("rbac.authorization.k8s.io", "ClusterRole"),
            ("rbac.authorization.k8s.io", "RoleBinding"),
            ("", "Event"),
            ("events.k8s.io", "Event"),
            ("apiregistration.k8s.io", "APIService"),
            ("example.com", "Widget"),
            ("", "ConfigMapLike"),
        ] {
            assert_eq!(name_rule(group, kind), Rule::PathSegment, "{group}/{kind}");
        }
        object_name("rbac.authorization.k8s.io", "ClusterRole", "system:node").expect("rbac");
        object_name("apiregistration.k8s.io", "APIService", "v1.").expect("core APIService");
        assert!(object_name("", "ConfigMap", "system:node").is_err());
        assert!(object_name("example.com", "Widget", "a/b").is_err());
    }

    #[test]
    fn crd_names_are_plural_dot_group() {
        crd_name("widgets.example.com", "widgets", "example.com").expect("matching");
        let error = crd_name("widget.example.com", "widgets", "example.com").expect_err("plural");
        assert_eq!(
            error.to_string(),
            "\"widget.example.com\" is not a valid DNS-1123 subdomain (at most 253 characters: \
             lowercase letters, digits, '-' and '.', each dot-separated part starting and ending \
             with a letter or digit): a CustomResourceDefinition must be named \
             <spec.names.plural>.<spec.group>: \"widgets.example.com\""
        );
    }

    #[test]
    fn namespaces_and_api_versions() {
        namespace("shop").expect("label");
        assert_eq!(
            namespace("x?y").expect_err("query").problem,
            Problem::Character {
                character: '?',
                position: 1
            }
        );
        assert!(namespace("a.b").is_err(), "a subdomain is not a namespace");
        for good in [
            "v1",
            "apps/v1",
            "apiextensions.k8s.io/v1",
            "example.com/v1beta1",
        ] {
            api_version(good).expect(good);
        }
        for bad in [
            "", "/v1", "apps/", "v1?x=y", "apps/v1#", "a/b/v1", "Apps/v1", "../v1",
        ] {
            assert!(api_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn errors_name_the_value_and_the_problem() {
        let error = object_name("", "ConfigMap", "a?fieldManager=x&force=true#").expect_err("?");
        let message = error.to_string();
        assert!(
            message
                .starts_with("\"a?fieldManager=x&force=true#\" is not a valid DNS-1123 subdomain"),
            "{message}"
        );
        assert!(
            message.ends_with("'?' at position 1 is not allowed"),
            "{message}"
        );
        // Control characters stay visible; long values are cut and their length said.
        let error = check("a\u{1b}[2J", Rule::PathSegment).expect_err("escape");
        assert!(error.to_string().starts_with("\"a\\u{1b}[2J\""), "{error}");
        let message = check(&"a".repeat(10_000), Rule::Dns1123Subdomain)
            .expect_err("long")
            .to_string();
        assert!(message.contains("… (10000 characters)"), "{message}");
        assert!(message.len() < 400, "{message}");
    }

    #[test]
    fn escaping_keeps_valid_names_and_encodes_the_rest() {
        assert!(matches!(escape_segment("web-1.example"), Cow::Borrowed(_)));
        assert_eq!(escape_segment("system:node"), "system%3Anode");
        assert_eq!(escape_segment("a b"), "a%20b");
        assert_eq!(
            escape_segment("a?fieldManager=x&force=true#"),
            "a%3FfieldManager%3Dx%26force%3Dtrue%23"
        );
        assert_eq!(escape_segment("a/b%"), "a%2Fb%25");
        assert_eq!(escape_segment("é"), "%C3%A9");
    }

    /// A small deterministic generator (xorshift), so the property loop needs no dependency.
    struct Xorshift(u64);

    impl Xorshift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn string(&mut self) -> String {
            const INTERESTING: &[char] = &[
                'a', 'z', '0', '9', '-', '.', '/', '%', '?', '#', '&', '=', ' ', ':', 'A', 'Z',
                '_', '~', '\n', '\0', '\u{7f}', '\u{85}', 'é', '€', '😀', '\u{202e}',
            ];
            let length = match self.next() % 8 {
                0 => 0,
                1 => 250 + (self.next() % 10) as usize,
                _ => (self.next() % 70) as usize,
            };
            (0..length)
                .map(|_| {
                    if self.next().is_multiple_of(4) {
                        char::from_u32((self.next() % 0x11_0000) as u32).unwrap_or('x')
                    } else {
                        INTERESTING[(self.next() % INTERESTING.len() as u64) as usize]
                    }
                })
                .collect()
        }
    }

    fn decode(escaped: &str) -> Vec<u8> {
        let bytes = escaped.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex digit"));
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn property_never_panics_names_the_input_and_escapes_to_one_segment() {
        let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
        let rules = [
            Rule::Dns1123Label,
            Rule::Dns1123Subdomain,
            Rule::PathSegment,
        ];
        for _ in 0..20_000 {
            let value = random.string();
            for rule in rules {
                match check(&value, rule) {
                    Ok(()) => {
                        // Whatever passes any rule is one path segment, and no dot segment.
                        assert!(!value.is_empty() && value != "." && value != "..");
                        assert!(!value.contains(['/', '%', '?', '#']), "{value:?}");
                        assert!(!value.chars().any(char::is_control), "{value:?}");
                        if rule != Rule::PathSegment {
                            assert_eq!(escape_segment(&value), value.as_str());
                        }
                    }
                    Err(error) => {
                        assert_eq!(error.value, value);
                        assert!(error.to_string().starts_with(&shown(&value)), "{error}");
                    }
                }
                // Label ⊂ subdomain ⊂ path segment: a stricter rule never accepts more.
                if check(&value, Rule::Dns1123Label).is_ok() {
                    assert!(check(&value, Rule::Dns1123Subdomain).is_ok(), "{value:?}");
                }
                if check(&value, Rule::Dns1123Subdomain).is_ok() {
                    assert!(check(&value, Rule::PathSegment).is_ok(), "{value:?}");
                }
            }
            let escaped = escape_segment(&value);
            assert!(
                escaped
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
                "{escaped}"
            );
            assert_eq!(decode(&escaped), value.as_bytes());
            let _ = api_version(&value);
            let _ = namespace(&value);
            let _ = object_name("", "ConfigMap", &value);
        }
    }
}
