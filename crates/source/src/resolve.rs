//! Picks the commit a [`Reference`] names from the remote's ref listing. Pure: no I/O, so the rules
//! (semver ordering, missing refs) are unit-tested here.

use crate::error::SourceError;
use crate::remote::RemoteRef;
use crate::spec::Reference;

/// What a reference resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub commit: gix::ObjectId,
    /// The name before `@` in the revision string (`main`, `v1.2.0`); `None` for bare commits.
    pub revision_name: Option<String>,
    /// The annotated tag object whose signature is checked instead of the commit's.
    pub annotated_tag: Option<gix::ObjectId>,
    /// For branch + commit pins: the branch tip the commit must be an ancestor of.
    pub branch_tip: Option<gix::ObjectId>,
}

pub fn resolve(
    refs: &[RemoteRef],
    reference: &Reference,
    url: &str,
) -> Result<Resolved, SourceError> {
    let not_found = || SourceError::RefNotFound {
        url: url.to_owned(),
        reference: reference.to_string(),
    };
    let find = |name: &str| refs.iter().find(|r| r.name == name);
    let from_tag = |tag_name: &str, r: &RemoteRef| Resolved {
        commit: r.commit,
        revision_name: Some(tag_name.to_owned()),
        annotated_tag: (r.target != r.commit).then_some(r.target),
        branch_tip: None,
    };
    match reference {
        Reference::Branch(name) => {
            let r = find(&format!("refs/heads/{name}")).ok_or_else(not_found)?;
            Ok(Resolved {
                commit: r.commit,
                revision_name: Some(name.clone()),
                annotated_tag: None,
                branch_tip: None,
            })
        }
        Reference::Tag(name) => {
            let r = find(&format!("refs/tags/{name}")).ok_or_else(not_found)?;
            Ok(from_tag(name, r))
        }
        Reference::Semver(req) => {
            let best = refs
                .iter()
                .filter_map(|r| {
                    let tag = r.name.strip_prefix("refs/tags/")?;
                    let version =
                        semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()?;
                    req.matches(&version).then_some((version, tag, r))
                })
                .max_by(|a, b| a.0.cmp(&b.0))
                .ok_or_else(not_found)?;
            Ok(from_tag(best.1, best.2))
        }
        Reference::Commit(sha) => Ok(Resolved {
            commit: parse_sha(sha, reference)?,
            revision_name: None,
            annotated_tag: None,
            branch_tip: None,
        }),
        Reference::BranchCommit { branch, commit } => {
            let tip =
                find(&format!("refs/heads/{branch}")).ok_or_else(|| SourceError::RefNotFound {
                    url: url.to_owned(),
                    reference: format!("branch {branch}"),
                })?;
            Ok(Resolved {
                commit: parse_sha(commit, reference)?,
                revision_name: Some(branch.clone()),
                annotated_tag: None,
                branch_tip: Some(tip.commit),
            })
        }
    }
}

fn parse_sha(sha: &str, reference: &Reference) -> Result<gix::ObjectId, SourceError> {
    gix::ObjectId::from_hex(sha.as_bytes()).map_err(|e| SourceError::InvalidReference {
        reference: reference.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> gix::ObjectId {
        gix::ObjectId::from_bytes_or_panic(&[n; 20])
    }

    fn listing() -> Vec<RemoteRef> {
        let r = |name: &str, target: u8, commit: u8| RemoteRef {
            name: name.into(),
            target: id(target),
            commit: id(commit),
        };
        vec![
            r("refs/heads/main", 1, 1),
            r("refs/tags/v1.2.0", 2, 2),
            r("refs/tags/v1.10.0", 3, 3),
            r("refs/tags/v2.0.0", 4, 4),
            r("refs/tags/1.3.0", 9, 5),
            r("refs/tags/not-a-version", 6, 6),
        ]
    }

    #[test]
    fn semver_picks_highest_matching_tag_not_lexicographic() {
        let req = Reference::parse("semver:>=1.2 <2").expect("range");
        let resolved = resolve(&listing(), &req, "u").expect("match");
        assert_eq!(resolved.revision_name.as_deref(), Some("v1.10.0"));
        assert_eq!(resolved.commit, id(3));
    }

    #[test]
    fn annotated_tags_are_peeled_and_remembered() {
        let resolved = resolve(&listing(), &Reference::Tag("1.3.0".into()), "u").expect("tag");
        assert_eq!(resolved.commit, id(5));
        assert_eq!(resolved.annotated_tag, Some(id(9)));
    }

    #[test]
    fn missing_refs_are_named_in_the_error() {
        let err = resolve(&listing(), &Reference::Branch("gone".into()), "https://h/r")
            .expect_err("missing");
        assert_eq!(
            err,
            SourceError::RefNotFound {
                url: "https://h/r".into(),
                reference: "branch gone".into()
            }
        );
        let none = Reference::parse("semver:>=3").expect("range");
        assert!(matches!(
            resolve(&listing(), &none, "u"),
            Err(SourceError::RefNotFound { .. })
        ));
    }
}
