//! Capstan's API: the one typed application spec and the views users write.
//!
//! - [`AppSpec`] (module [`spec`]): an application's source, render options, destination, sync
//!   policy, ignored differences and health rules, with real enums and `Duration`s. The engine maps
//!   it to each stage's options (`capstan_engine::spec`).
//! - Two serde views of it that share its types field for field: the app file `capstan.yaml`
//!   ([`app_file`], read by the CLI) and the `Application` custom resource ([`crd`], reconciled by
//!   the controller, together with `GitRepository` and the status types).
//! - [`duration`]: the one duration grammar (Go's: `90s`, `5m`, `1h30m`, `500ms`) for every field
//!   and flag.
//!
//! No I/O and no Kubernetes client here: types, their schemas and pure conversions.

mod closed;

pub mod app_file;
pub mod crd;
pub mod duration;
pub mod spec;

pub use closed::UnknownValue;
pub use spec::AppSpec;
