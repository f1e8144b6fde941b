//! Authenticity checks: does this request come from the holder of the receiver's secret?
//!
//! | provider | header | check |
//! | --- | --- | --- |
//! | GitHub | `X-Hub-Signature-256: sha256=<hex>` | HMAC-SHA256 of the raw body |
//! | Gitea/Forgejo | `X-Gitea-Signature: <hex>` | HMAC-SHA256 of the raw body |
//! | Bitbucket Cloud and Server | `X-Hub-Signature: sha256=<hex>` | HMAC-SHA256 of the raw body |
//! | generic | `X-Signature: sha256=<hex>` | HMAC-SHA256 of the raw body |
//! | GitLab | `X-Gitlab-Token: <secret>` | equals the secret |
//!
//! Comparisons take constant time (`hmac`'s `verify_slice`; for the token, `subtle` over SHA-256
//! digests so that not even the length leaks). SHA-1 signatures (GitHub's legacy `X-Hub-Signature:
//! sha1=`) are not accepted. Error messages name the header, never its value.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Provider, Secret};

/// Why a request was not authenticated (all become 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("{header} is not of the form {expected}")]
    Malformed {
        header: &'static str,
        expected: &'static str,
    },
    #[error("{0} does not match the request body and the receiver's secret")]
    Mismatch(&'static str),
    #[error("the receiver has an empty secret; every request is refused")]
    EmptySecret,
}

/// How a provider proves a request.
enum Scheme {
    /// HMAC-SHA256 of the body, hex, after `prefix` (may be empty).
    Hmac {
        header: &'static str,
        prefix: &'static str,
        expected: &'static str,
    },
    /// The secret itself, in a header.
    Token { header: &'static str },
}

fn scheme(provider: Provider) -> Scheme {
    match provider {
        Provider::GitHub => Scheme::Hmac {
            header: "X-Hub-Signature-256",
            prefix: "sha256=",
            expected: "sha256=<hex HMAC-SHA256>",
        },
        Provider::Gitea => Scheme::Hmac {
            header: "X-Gitea-Signature",
            prefix: "",
            expected: "<hex HMAC-SHA256>",
        },
        Provider::Bitbucket => Scheme::Hmac {
            header: "X-Hub-Signature",
            prefix: "sha256=",
            expected: "sha256=<hex HMAC-SHA256>",
        },
        Provider::Generic => Scheme::Hmac {
            header: "X-Signature",
            prefix: "sha256=",
            expected: "sha256=<hex HMAC-SHA256>",
        },
        Provider::GitLab => Scheme::Token {
            header: "X-Gitlab-Token",
        },
    }
}

/// The header that carries the proof for `provider`, for messages and docs.
pub fn signature_header(provider: Provider) -> &'static str {
    match scheme(provider) {
        Scheme::Hmac { header, .. } | Scheme::Token { header } => header,
    }
}

/// Checks the request's signature or token against `secret`.
pub fn verify(
    provider: Provider,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    secret: &Secret,
) -> Result<(), AuthError> {
    if secret.is_empty() {
        return Err(AuthError::EmptySecret);
    }
    match scheme(provider) {
        Scheme::Hmac {
            header,
            prefix,
            expected,
        } => {
            let value = headers.get(header).ok_or(AuthError::Missing(header))?;
            let malformed = AuthError::Malformed { header, expected };
            let value = value.to_str().map_err(|_| malformed.clone())?.trim();
            // The algorithm name is case-insensitive in practice (`SHA256=` is seen in the wild).
            let hex = match value.get(..prefix.len()) {
                Some(head) if head.eq_ignore_ascii_case(prefix) => &value[prefix.len()..],
                _ => return Err(malformed),
            };
            let signature = decode_hex(hex).ok_or(malformed)?;
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose())
                .map_err(|_| AuthError::EmptySecret)?;
            mac.update(body);
            mac.verify_slice(&signature)
                .map_err(|_| AuthError::Mismatch(header))
        }
        Scheme::Token { header } => {
            let value = headers.get(header).ok_or(AuthError::Missing(header))?;
            let given = Sha256::digest(value.as_bytes());
            let wanted = Sha256::digest(secret.expose());
            if bool::from(given.ct_eq(&wanted)) {
                Ok(())
            } else {
                Err(AuthError::Mismatch(header))
            }
        }
    }
}

/// Hex (either case) → bytes; `None` for odd lengths, other characters, or nothing.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    hex.as_bytes()
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    /// GitHub's documented test vector ("Validating webhook deliveries"): computed outside this
    /// code, so it checks the HMAC and the hex format, not just symmetry with our own signer.
    const GITHUB_SECRET: &str = "It's a Secret to Everybody";
    const GITHUB_BODY: &str = "Hello, World!";
    const GITHUB_HEX: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    fn secret() -> Secret {
        Secret::new(GITHUB_SECRET)
    }

    #[test]
    fn github_accepts_the_documented_signature() {
        let good = headers(&[("x-hub-signature-256", &format!("sha256={GITHUB_HEX}"))]);
        assert_eq!(
            verify(Provider::GitHub, &good, GITHUB_BODY.as_bytes(), &secret()),
            Ok(())
        );
        let upper = headers(&[(
            "x-hub-signature-256",
            &format!("sha256={}", GITHUB_HEX.to_uppercase()),
        )]);
        assert_eq!(
            verify(Provider::GitHub, &upper, GITHUB_BODY.as_bytes(), &secret()),
            Ok(())
        );
    }

    #[test]
    fn github_refuses_changed_body_wrong_secret_and_bad_headers() {
        let good = headers(&[("x-hub-signature-256", &format!("sha256={GITHUB_HEX}"))]);
        assert_eq!(
            verify(Provider::GitHub, &good, b"Hello, World?", &secret()),
            Err(AuthError::Mismatch("X-Hub-Signature-256"))
        );
        assert_eq!(
            verify(
                Provider::GitHub,
                &good,
                GITHUB_BODY.as_bytes(),
                &Secret::new("other")
            ),
            Err(AuthError::Mismatch("X-Hub-Signature-256"))
        );
        assert_eq!(
            verify(
                Provider::GitHub,
                &HeaderMap::new(),
                GITHUB_BODY.as_bytes(),
                &secret()
            ),
            Err(AuthError::Missing("X-Hub-Signature-256"))
        );
        for bad in [
            GITHUB_HEX.to_owned(), // no prefix
            format!("sha1={GITHUB_HEX}"),
            "sha256=".to_owned(),
            "sha256=abc".to_owned(),
            "sha256=zz".to_owned(),
        ] {
            let result = verify(
                Provider::GitHub,
                &headers(&[("x-hub-signature-256", &bad)]),
                GITHUB_BODY.as_bytes(),
                &secret(),
            );
            assert!(
                matches!(result, Err(AuthError::Malformed { .. })),
                "{bad}: {result:?}"
            );
        }
        // A truncated signature has the right form but must not pass.
        let short = headers(&[(
            "x-hub-signature-256",
            &format!("sha256={}", &GITHUB_HEX[..32]),
        )]);
        assert_eq!(
            verify(Provider::GitHub, &short, GITHUB_BODY.as_bytes(), &secret()),
            Err(AuthError::Mismatch("X-Hub-Signature-256"))
        );
    }

    #[test]
    fn each_hmac_provider_reads_its_own_header_and_format() {
        let body = GITHUB_BODY.as_bytes();
        let cases: [(Provider, &'static str, String); 3] = [
            (Provider::Gitea, "x-gitea-signature", GITHUB_HEX.to_owned()),
            (
                Provider::Bitbucket,
                "x-hub-signature",
                format!("sha256={GITHUB_HEX}"),
            ),
            (
                Provider::Generic,
                "x-signature",
                format!("sha256={GITHUB_HEX}"),
            ),
        ];
        for (provider, header, value) in cases {
            assert_eq!(
                verify(provider, &headers(&[(header, &value)]), body, &secret()),
                Ok(()),
                "{provider}"
            );
            // GitHub's header does not authenticate a request for another provider.
            let github_style = headers(&[("x-hub-signature-256", &format!("sha256={GITHUB_HEX}"))]);
            assert_eq!(
                verify(provider, &github_style, body, &secret()),
                Err(AuthError::Missing(signature_header(provider))),
                "{provider}"
            );
        }
        // Gitea signs without a prefix; a prefixed value is not its format.
        let prefixed = headers(&[("x-gitea-signature", &format!("sha256={GITHUB_HEX}"))]);
        assert!(matches!(
            verify(Provider::Gitea, &prefixed, body, &secret()),
            Err(AuthError::Malformed { .. })
        ));
    }

    #[test]
    fn gitlab_token_must_equal_the_secret() {
        let secret = Secret::new("glpat-like-token");
        assert_eq!(
            verify(
                Provider::GitLab,
                &headers(&[("x-gitlab-token", "glpat-like-token")]),
                b"{}",
                &secret
            ),
            Ok(())
        );
        for wrong in [
            "glpat-like-toke",
            "glpat-like-token2",
            "GLPAT-LIKE-TOKEN",
            "",
        ] {
            assert_eq!(
                verify(
                    Provider::GitLab,
                    &headers(&[("x-gitlab-token", wrong)]),
                    b"{}",
                    &secret
                ),
                Err(AuthError::Mismatch("X-Gitlab-Token")),
                "{wrong:?}"
            );
        }
        assert_eq!(
            verify(Provider::GitLab, &HeaderMap::new(), b"{}", &secret),
            Err(AuthError::Missing("X-Gitlab-Token"))
        );
    }

    #[test]
    fn an_empty_secret_refuses_everything() {
        // HMAC with an empty key is computable by anyone; a GitLab hook without a token sends none.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"").expect("any key length");
        mac.update(b"{}");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let signed = headers(&[("x-hub-signature-256", &format!("sha256={hex}"))]);
        assert_eq!(
            verify(Provider::GitHub, &signed, b"{}", &Secret::new("")),
            Err(AuthError::EmptySecret)
        );
        assert_eq!(
            verify(
                Provider::GitLab,
                &headers(&[("x-gitlab-token", "")]),
                b"{}",
                &Secret::new("")
            ),
            Err(AuthError::EmptySecret)
        );
    }

    #[test]
    fn messages_name_the_header_not_its_value() {
        let value = format!("sha256={}", "ab".repeat(32));
        let err = verify(
            Provider::GitHub,
            &headers(&[("x-hub-signature-256", &value)]),
            b"x",
            &secret(),
        )
        .expect_err("wrong signature");
        let message = err.to_string();
        assert!(message.contains("X-Hub-Signature-256"), "{message}");
        assert!(!message.contains(&value), "{message}");
        assert!(!message.contains(GITHUB_SECRET), "{message}");
    }

    #[test]
    fn hex_decoding() {
        assert_eq!(decode_hex("00ffA0"), Some(vec![0x00, 0xff, 0xa0]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex(""), None);
        assert_eq!(decode_hex("0g"), None);
        assert_eq!(decode_hex("é0"), None);
    }
}
