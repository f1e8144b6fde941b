//! Sorting transport failures into the actionable [`SourceError`](crate::SourceError) variants by
//! the types gix hands back, never by the wording of their messages.
//!
//! gix reports a failure as a tree of errors (`gix::Error`, `std::io::Error` payloads, the concrete
//! gix-transport / gix-protocol / reqwest errors underneath). [`Findings::of`] walks the whole tree
//! and notes what the typed values say: the HTTP status of a refused request, gix's error classes
//! (unauthenticated, permission denied, not found), an `ERR` packet line from the git server, the
//! `std::io::ErrorKind` of a failed connection, a local program that could not be started.
//! [`verdict`] turns those findings into a variant.
//!
//! The one text-only input is what OpenSSH prints ([`ssh_diagnosis`]): ssh runs as a separate
//! program, and its diagnostics reach us only as the lines it writes.

use std::error::Error;
use std::io::ErrorKind;

use gix::error::Class;
use gix::protocol::transport::client;
use gix::protocol::transport::packetline;

/// Bounds the walk of a cause tree; real trees are a handful of errors deep.
const MAX_CAUSES: usize = 256;

/// Where in the conversation with the remote the failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Opening the connection, the handshake and the ref listing: a refusal here is about the
    /// repository as a whole.
    Connect,
    /// The pack transfer of a fetch, after the remote listed its refs.
    Transfer,
}

/// What the typed errors in the cause tree of one failure say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Findings {
    /// The HTTP status of a refused request: 401 from gix's authentication challenge
    /// ([`client::AuthenticationRequired`]), any other from the [`reqwest::Error`] of the response.
    pub http_status: Option<u16>,
    /// Credentials were missing or rejected ([`Class::Unauthenticated`]).
    pub unauthenticated: bool,
    /// The identity was refused access ([`Class::PermissionDenied`], e.g. io `PermissionDenied`).
    pub permission_denied: bool,
    /// Something did not exist ([`Class::NotFound`], e.g. io `NotFound`, a local path without a
    /// repository).
    pub not_found: bool,
    /// The git server answered with an `ERR` packet line ([`packetline::read::Error`]).
    pub server_refused: bool,
    /// The network path failed: a connect or timeout [`reqwest::Error`], or an io error whose kind
    /// is that of a failed connection (refused, reset, timed out, unreachable).
    pub unreachable: bool,
    /// A local program (ssh, git-upload-pack) could not be started
    /// ([`client::Error::InvokeProgram`]).
    pub local_program: bool,
}

impl Findings {
    pub(crate) fn of(error: &(dyn Error + 'static)) -> Self {
        let mut findings = Findings::default();
        for classification in gix::error::classify(error) {
            match classification.class() {
                Class::Unauthenticated => findings.unauthenticated = true,
                Class::PermissionDenied => findings.permission_denied = true,
                Class::NotFound => findings.not_found = true,
                _ => {}
            }
        }
        for cause in causes(error) {
            if cause.is::<client::AuthenticationRequired>() {
                findings.http_status.get_or_insert(401);
            } else if let Some(http) = cause.downcast_ref::<reqwest::Error>() {
                if let Some(status) = http.status() {
                    findings.http_status.get_or_insert(status.as_u16());
                }
                findings.unreachable |= http.is_connect() || http.is_timeout();
            } else if cause.is::<packetline::read::Error>() {
                findings.server_refused = true;
            } else if let Some(client::Error::InvokeProgram { .. }) = cause.downcast_ref() {
                findings.local_program = true;
            } else if let Some(io) = cause.downcast_ref::<std::io::Error>() {
                findings.unreachable |= is_connection_failure(io.kind());
            }
        }
        findings
    }
}

/// io error kinds of a connection that could not be made or was lost.
fn is_connection_failure(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::ConnectionRefused
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::NotConnected
            | ErrorKind::TimedOut
            | ErrorKind::HostUnreachable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::NetworkDown
            | ErrorKind::AddrNotAvailable
    )
}

/// Every error in the cause tree of `error`, outermost first: `source()` chains, the payloads of
/// `std::io::Error` (which its own `source()` skips) and every branch of gix's error trees.
fn causes<'a>(error: &'a (dyn Error + 'static)) -> Vec<&'a (dyn Error + 'static)> {
    let mut found = Vec::new();
    let mut next = vec![error];
    while let Some(error) = next.pop() {
        if found.len() >= MAX_CAUSES {
            break;
        }
        found.push(error);
        if let Some(tree) = error.downcast_ref::<gix::Error>() {
            // Visits the whole tree below, nested trees and io payloads included.
            found.extend(tree.iter_errors().take(MAX_CAUSES));
        } else if let Some(io) = error.downcast_ref::<std::io::Error>() {
            next.extend(
                io.get_ref()
                    .map(|payload| payload as &(dyn Error + 'static)),
            );
        } else {
            next.extend(error.source());
        }
    }
    found
}

/// The variant a failure belongs in, short of the ssh specifics and of cancellation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    AuthFailed,
    RepositoryNotFound,
    Unreachable,
    /// A generic transport error.
    Other,
}

/// Decides the variant from the typed findings. `over_ssh`: gix reads some of ssh's own stderr
/// lines ("Connection closed by …") as io `NotFound`, so over ssh that kind says nothing about the
/// repository; the ssh diagnostics ([`ssh_diagnosis`]) speak for ssh instead.
pub(crate) fn verdict(findings: &Findings, stage: Stage, over_ssh: bool) -> Verdict {
    if findings.local_program {
        return Verdict::Other;
    }
    match findings.http_status {
        Some(401 | 403) => return Verdict::AuthFailed,
        Some(404) => return Verdict::RepositoryNotFound,
        // The server answered, so it is reachable; the status is in the detail.
        Some(_) => return Verdict::Other,
        None => {}
    }
    if findings.unauthenticated || findings.permission_denied {
        return Verdict::AuthFailed;
    }
    // An ERR line or a missing path before any ref was listed: the repository is not there or not
    // served (git daemon answers "access denied or repository not exported" for both). During the
    // transfer, these are about objects, not the repository.
    if stage == Stage::Connect && (findings.server_refused || (findings.not_found && !over_ssh)) {
        return Verdict::RepositoryNotFound;
    }
    if findings.unreachable {
        return Verdict::Unreachable;
    }
    Verdict::Other
}

/// What OpenSSH's diagnostics say went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SshProblem {
    /// The server's host key differs from the one in known_hosts.
    HostKeyChanged,
    /// The server's host key is not in known_hosts (and strict checking is on).
    HostKeyUnknown,
    /// The private key could not be decrypted with the passphrase given (or without one).
    KeyPassphrase,
    /// The server refused every key offered.
    AuthRejected,
    /// No connection to the server: name resolution, refused, timed out, closed.
    Unreachable,
}

/// Known OpenSSH messages (lowercased), most specific first: a changed host key also ends in
/// "Host key verification failed".
const SSH_MESSAGES: &[(&str, SshProblem)] = &[
    (
        "remote host identification has changed",
        SshProblem::HostKeyChanged,
    ),
    (
        "has changed and you have requested strict checking",
        SshProblem::HostKeyChanged,
    ),
    ("host key verification failed", SshProblem::HostKeyUnknown),
    ("host key is known for", SshProblem::HostKeyUnknown),
    (
        "incorrect passphrase supplied to decrypt private key",
        SshProblem::KeyPassphrase,
    ),
    ("permission denied (", SshProblem::AuthRejected),
    ("too many authentication failures", SshProblem::AuthRejected),
    ("could not resolve hostname", SshProblem::Unreachable),
    ("connection refused", SshProblem::Unreachable),
    ("connection timed out", SshProblem::Unreachable),
    ("operation timed out", SshProblem::Unreachable),
    ("no route to host", SshProblem::Unreachable),
    ("network is unreachable", SshProblem::Unreachable),
    ("connection closed by", SshProblem::Unreachable),
    ("connection reset by", SshProblem::Unreachable),
    ("closed by remote host", SshProblem::Unreachable),
    ("not responding", SshProblem::Unreachable),
];

/// Reads what went wrong from the diagnostics of OpenSSH (`ssh -E`, or the stderr of `ssh-keygen`).
///
/// This is the one place where a failure is told by its text. ssh is another program that gix
/// spawns: its failures are not error values but the lines it prints, and a host key problem or a
/// refused key reaches gix only as a connection that ends. OpenSSH's messages are fixed strings in
/// its source (and gix runs ssh with `LANG=C`), so this table of them is stable; anything not in it
/// is left to the typed classification.
pub(crate) fn ssh_diagnosis(stderr: &str) -> Option<SshProblem> {
    let lower = stderr.to_ascii_lowercase();
    SSH_MESSAGES
        .iter()
        .find(|(message, _)| lower.contains(message))
        .map(|(_, problem)| *problem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gix::error::{ErrorExt, message};

    /// The error of a handshake that failed with `inner`, wrapped as gix-protocol wraps it.
    fn handshake_failed(inner: client::Error) -> gix::Error {
        inner.and_raise(message("Transport handshake failed"))
    }

    fn findings(error: &(dyn Error + 'static)) -> Findings {
        Findings::of(error)
    }

    fn verdict_of(error: &(dyn Error + 'static), stage: Stage) -> Verdict {
        verdict(&findings(error), stage, false)
    }

    /// A `reqwest::Error` as gix-transport gets it for a response with `status`.
    fn http_error(status: u16) -> reqwest::Error {
        let response = http::Response::builder()
            .status(status)
            .body(Vec::<u8>::new())
            .expect("valid response");
        reqwest::Response::from(response)
            .error_for_status()
            .expect_err("an error status")
    }

    /// What gix-transport's reqwest backend returns for a non-401 error status.
    fn http_status_failure(status: u16) -> gix::Error {
        let kind = if status >= 500 {
            ErrorKind::ConnectionAborted
        } else {
            ErrorKind::Other
        };
        let tree = http_error(status).and_raise(message("Received HTTP status"));
        handshake_failed(client::Error::Io(std::io::Error::new(kind, tree)))
    }

    #[test]
    fn rejected_credentials_over_http_are_an_auth_failure() {
        // gix-protocol's answer when the credentials it sent were refused with a 401 again.
        let challenge = std::io::Error::new(
            ErrorKind::PermissionDenied,
            client::AuthenticationRequired::default(),
        );
        let error = challenge
            .raise()
            .and_raise(message("Credentials were not accepted").unauthenticated());
        let found = findings(&error);
        assert_eq!(found.http_status, Some(401));
        assert!(found.unauthenticated);
        assert_eq!(verdict_of(&error, Stage::Connect), Verdict::AuthFailed);
    }

    #[test]
    fn a_401_without_credentials_to_offer_is_an_auth_failure() {
        // The credential callback had nothing: gix raises an unauthenticated message.
        let error = gix::error::unauthenticated("No credentials were returned at all")
            .raise()
            .and_raise(message("Transport handshake failed"));
        assert!(findings(&error).unauthenticated);
        assert_eq!(verdict_of(&error, Stage::Connect), Verdict::AuthFailed);
    }

    #[test]
    fn http_statuses_decide_by_their_number() {
        let status = |status| findings(&http_status_failure(status)).http_status;
        assert_eq!(status(404), Some(404));
        assert_eq!(status(403), Some(403));
        assert_eq!(
            verdict_of(&http_status_failure(404), Stage::Connect),
            Verdict::RepositoryNotFound
        );
        assert_eq!(
            verdict_of(&http_status_failure(403), Stage::Connect),
            Verdict::AuthFailed
        );
        // A server error is an answer: reachable, and not about credentials or the repository,
        // though gix gives it the io kind of an aborted connection.
        assert_eq!(
            verdict_of(&http_status_failure(502), Stage::Connect),
            Verdict::Other
        );
    }

    #[test]
    fn an_err_line_at_the_handshake_is_a_missing_repository() {
        let refused = packetline::read::Error {
            message: "access denied or repository not exported: /nope.git".into(),
        };
        let error = handshake_failed(client::Error::Io(std::io::Error::other(refused)));
        assert!(findings(&error).server_refused);
        assert_eq!(
            verdict_of(&error, Stage::Connect),
            Verdict::RepositoryNotFound
        );
        assert_eq!(verdict_of(&error, Stage::Transfer), Verdict::Other);
    }

    #[test]
    fn a_missing_local_repository_is_not_found_but_not_over_ssh() {
        let error = gix::error::not_found("Missing HEAD")
            .raise()
            .and_raise(message("Could not verify that the path is a git directory"));
        let found = findings(&error);
        assert!(found.not_found);
        assert_eq!(
            verdict(&found, Stage::Connect, false),
            Verdict::RepositoryNotFound
        );
        assert_eq!(verdict(&found, Stage::Connect, true), Verdict::Other);
        assert_eq!(verdict(&found, Stage::Transfer, false), Verdict::Other);
    }

    #[test]
    fn failed_connections_are_unreachable_by_io_kind() {
        for kind in [
            ErrorKind::ConnectionRefused,
            ErrorKind::ConnectionReset,
            ErrorKind::TimedOut,
            ErrorKind::HostUnreachable,
            ErrorKind::NetworkUnreachable,
        ] {
            let error = handshake_failed(client::Error::Io(kind.into()));
            assert_eq!(
                verdict_of(&error, Stage::Connect),
                Verdict::Unreachable,
                "{kind:?}"
            );
            // A bare io error (the git:// connection is opened by the stage itself) too.
            let bare = std::io::Error::from(kind);
            assert_eq!(
                verdict_of(&bare, Stage::Transfer),
                Verdict::Unreachable,
                "{kind:?}"
            );
        }
        let eof = handshake_failed(client::Error::Io(ErrorKind::UnexpectedEof.into()));
        assert_eq!(verdict_of(&eof, Stage::Connect), Verdict::Other);
    }

    #[test]
    fn a_refused_http_connection_is_unreachable() {
        // A port nobody listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let refused = reqwest::blocking::get(format!("http://127.0.0.1:{port}/app.git"))
            .expect_err("nothing listens");
        let error = handshake_failed(client::Error::Io(std::io::Error::other(
            refused.and_raise(message("GET failed")),
        )));
        let found = findings(&error);
        assert!(
            found.unreachable && found.http_status.is_none(),
            "{found:?}"
        );
        assert_eq!(verdict_of(&error, Stage::Connect), Verdict::Unreachable);
    }

    #[test]
    fn a_program_that_cannot_be_started_is_a_transport_error() {
        // io NotFound here means "no ssh binary", not "no repository".
        let error = handshake_failed(client::Error::InvokeProgram {
            source: ErrorKind::NotFound.into(),
            command: "ssh".into(),
        });
        let found = findings(&error);
        assert!(found.local_program && found.not_found);
        assert_eq!(verdict_of(&error, Stage::Connect), Verdict::Other);
    }

    #[test]
    fn unrelated_failures_stay_generic() {
        let error = handshake_failed(client::Error::ExpectedLine("capabilities"));
        assert_eq!(findings(&error), Findings::default());
        assert_eq!(verdict_of(&error, Stage::Connect), Verdict::Other);
    }

    #[test]
    fn causes_reach_io_payloads_and_nested_trees() {
        let refused = packetline::read::Error {
            message: "refused".into(),
        };
        let nested = std::io::Error::other(refused.and_raise(message("inner context")));
        let error = std::io::Error::other(nested);
        let all = causes(&error);
        assert!(
            all.iter()
                .any(|cause| cause.is::<packetline::read::Error>())
        );
    }

    #[test]
    fn ssh_messages_are_recognised() {
        let cases = [
            (
                "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n\
                 @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n\
                 Host key for [127.0.0.1]:2222 has changed and you have requested strict checking.\r\n\
                 Host key verification failed.",
                Some(SshProblem::HostKeyChanged),
            ),
            (
                "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict \
                 checking.\r\nHost key verification failed.",
                Some(SshProblem::HostKeyUnknown),
            ),
            (
                "Host key verification failed.",
                Some(SshProblem::HostKeyUnknown),
            ),
            (
                "Load key \"/keys/id\": incorrect passphrase supplied to decrypt private key",
                Some(SshProblem::KeyPassphrase),
            ),
            (
                "git@127.0.0.1: Permission denied (publickey).",
                Some(SshProblem::AuthRejected),
            ),
            (
                "Received disconnect from 10.0.0.1 port 22:2: Too many authentication failures",
                Some(SshProblem::AuthRejected),
            ),
            (
                "ssh: Could not resolve hostname git.example.invalid: Name or service not known",
                Some(SshProblem::Unreachable),
            ),
            (
                "ssh: connect to host 127.0.0.1 port 1: Connection refused",
                Some(SshProblem::Unreachable),
            ),
            (
                "ssh: connect to host 10.1.1.1 port 22: Connection timed out",
                Some(SshProblem::Unreachable),
            ),
            (
                "ssh: connect to host 10.1.1.1 port 22: No route to host",
                Some(SshProblem::Unreachable),
            ),
            (
                "Connection closed by 127.0.0.1 port 2222",
                Some(SshProblem::Unreachable),
            ),
            (
                "Timeout, server 127.0.0.1 not responding.",
                Some(SshProblem::Unreachable),
            ),
            (
                "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts.",
                None,
            ),
            ("", None),
        ];
        for (stderr, expected) in cases {
            assert_eq!(ssh_diagnosis(stderr), expected, "{stderr}");
        }
    }
}
