//! Kubeconfig selection with kubectl's precedence: `--kubeconfig` (one file), else every existing file
//! listed in `KUBECONFIG` merged in order, else `~/.kube/config`, else the in-cluster service account.
//! `--context` picks a context from whichever kubeconfig won.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{Config, KubeConfigOptions, Kubeconfig};

use crate::ClusterError;

/// How to find the cluster. Both fields unset means kubectl's defaults.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// `--kubeconfig`: exactly this file; `KUBECONFIG` is ignored.
    pub kubeconfig: Option<PathBuf>,
    /// `--context`: a context name in the kubeconfig instead of its current-context.
    pub context: Option<String>,
    /// Upper bound for establishing a TCP/TLS connection; `None` keeps kube's default (30 s). Until
    /// the server first answers, a request waiting longer than 5 s (or half this timeout) logs a
    /// warning naming the server and this timeout.
    pub connect_timeout: Option<Duration>,
    /// Called for every request sent, with its verb (`get`, `watch`, `create`, `patch`, `update`,
    /// `delete`): the controller counts API requests by verb with it.
    pub observe_request: Option<RequestObserver>,
    /// Client-side rate limit for every request (`--kube-api-qps`, `--kube-api-burst`); `None`
    /// leaves it to the API server's priority and fairness, as kubectl does.
    pub rate_limit: Option<crate::RateLimit>,
}

/// See [`ConnectOptions::observe_request`].
pub type RequestObserver = std::sync::Arc<dyn Fn(&'static str) + Send + Sync>;

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("kubeconfig", &self.kubeconfig)
            .field("context", &self.context)
            .field("connect_timeout", &self.connect_timeout)
            .field("observe_request", &self.observe_request.is_some())
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// The Kubernetes verb of an HTTP request (`list` and `get` are both `get`: telling them apart needs
/// the path's shape, which the verb label does not need).
pub(crate) fn request_verb<B>(request: &http::Request<B>) -> &'static str {
    let watch = request.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    });
    match *request.method() {
        http::Method::GET if watch => "watch",
        http::Method::GET => "get",
        http::Method::POST => "create",
        http::Method::PATCH => "patch",
        http::Method::PUT => "update",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

/// Where a connection's settings came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KubeconfigSource {
    Files {
        paths: Vec<PathBuf>,
        context: String,
    },
    InCluster,
}

impl fmt::Display for KubeconfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KubeconfigSource::Files { paths, context } => {
                write!(f, "{} (context {context})", join_paths(paths))
            }
            KubeconfigSource::InCluster => f.write_str("in-cluster service account"),
        }
    }
}

fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// The kubeconfig files to merge, in precedence order, or `None` to fall back to in-cluster.
fn kubeconfig_paths(
    flag: Option<&Path>,
    env: Option<&std::ffi::OsStr>,
    home: Option<&Path>,
) -> Result<Option<Vec<PathBuf>>, ClusterError> {
    if let Some(path) = flag {
        // kubectl treats an explicit --kubeconfig that does not exist as an error, never a fallback.
        return Ok(Some(vec![path.to_path_buf()]));
    }
    if let Some(value) = env.filter(|v| !v.is_empty()) {
        let listed: Vec<PathBuf> = std::env::split_paths(value)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        let existing: Vec<PathBuf> = listed.iter().filter(|p| p.exists()).cloned().collect();
        if existing.is_empty() {
            return Err(ClusterError::NoKubeconfig {
                searched: format!("KUBECONFIG={}", join_paths(&listed)),
            });
        }
        return Ok(Some(existing));
    }
    let default = home.map(|h| h.join(".kube").join("config"));
    match default {
        Some(path) if path.exists() => Ok(Some(vec![path])),
        _ => Ok(None),
    }
}

fn read_merged(paths: &[PathBuf]) -> Result<Kubeconfig, ClusterError> {
    paths
        .iter()
        .try_fold(Kubeconfig::default(), |merged, path| {
            Kubeconfig::read_from(path)
                .and_then(|next| merged.merge(next))
                .map_err(|source| ClusterError::Kubeconfig {
                    path: path.clone(),
                    source,
                })
        })
}

pub(crate) async fn resolve(
    options: &ConnectOptions,
) -> Result<(Config, KubeconfigSource), ClusterError> {
    let home = std::env::home_dir();
    let paths = kubeconfig_paths(
        options.kubeconfig.as_deref(),
        std::env::var_os("KUBECONFIG").as_deref(),
        home.as_deref(),
    )?;
    let (mut config, source) = match paths {
        Some(paths) => {
            let kubeconfig = read_merged(&paths)?;
            let context = select_context(&kubeconfig, options.context.as_deref(), &paths)?;
            let kube_options = KubeConfigOptions {
                context: Some(context.clone()),
                ..Default::default()
            };
            let config = Config::from_custom_kubeconfig(kubeconfig, &kube_options)
                .await
                .map_err(|source| ClusterError::Config {
                    kubeconfig: join_paths(&paths),
                    context: context.clone(),
                    source,
                })?;
            (config, KubeconfigSource::Files { paths, context })
        }
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
            && options.context.is_none() =>
        {
            (
                Config::incluster().map_err(ClusterError::InCluster)?,
                KubeconfigSource::InCluster,
            )
        }
        None => {
            return Err(ClusterError::NoKubeconfig {
                searched: home
                    .map(|h| h.join(".kube/config").display().to_string())
                    .unwrap_or_else(|| "~/.kube/config ($HOME unset)".into()),
            });
        }
    };
    if let Some(timeout) = options.connect_timeout {
        config.connect_timeout = Some(timeout);
    }
    Ok((config, source))
}

fn select_context(
    kubeconfig: &Kubeconfig,
    requested: Option<&str>,
    paths: &[PathBuf],
) -> Result<String, ClusterError> {
    let defined = || kubeconfig.contexts.iter().map(|c| c.name.as_str());
    let wanted = requested.or(kubeconfig.current_context.as_deref());
    match wanted {
        Some(name) if defined().any(|n| n == name) => Ok(name.to_string()),
        _ => Err(ClusterError::UnknownContext {
            context: wanted.unwrap_or("<current-context unset>").to_string(),
            kubeconfig: join_paths(paths),
            available: {
                let names: Vec<&str> = defined().collect();
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    /// A directory removed when the returned guard drops.
    fn temp_dir(name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("capstan-cluster-{name}-"))
            .tempdir()
            .expect("temp dir");
        let path = dir.path().to_path_buf();
        (dir, path)
    }

    fn write_kubeconfig(path: &Path, contexts: &[(&str, &str)], current: Option<&str>) {
        let mut text = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
        for (_, server) in contexts {
            text += &format!("- name: {server}\n  cluster:\n    server: https://{server}:6443\n");
        }
        text += "users:\n- name: u\n  user:\n    token: t\ncontexts:\n";
        for (name, server) in contexts {
            text += &format!("- name: {name}\n  context:\n    cluster: {server}\n    user: u\n");
        }
        if let Some(current) = current {
            text += &format!("current-context: {current}\n");
        }
        std::fs::write(path, text).expect("write kubeconfig");
    }

    #[test]
    fn flag_wins_over_env_and_home() {
        let (_guard, dir) = temp_dir("flag");
        let flag = dir.join("flag");
        let env = OsString::from(dir.join("env"));
        std::fs::write(dir.join("env"), "").expect("write");
        let got = kubeconfig_paths(Some(&flag), Some(&env), Some(&dir)).expect("paths");
        assert_eq!(got, Some(vec![flag]));
    }

    #[test]
    fn env_list_keeps_existing_files_in_order() {
        let (_guard, dir) = temp_dir("env");
        let (a, b, missing) = (dir.join("a"), dir.join("b"), dir.join("missing"));
        std::fs::write(&a, "").expect("write");
        std::fs::write(&b, "").expect("write");
        let env = std::env::join_paths([&b, &missing, &a]).expect("join");
        let got = kubeconfig_paths(None, Some(&env), None).expect("paths");
        assert_eq!(got, Some(vec![b, a]));
    }

    #[test]
    fn env_list_of_missing_files_names_them() {
        let (_guard, dir) = temp_dir("missing");
        let env = OsString::from(dir.join("nope"));
        let err = kubeconfig_paths(None, Some(&env), None).expect_err("must fail");
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn no_home_config_means_in_cluster_fallback() {
        let (_guard, dir) = temp_dir("home");
        assert_eq!(
            kubeconfig_paths(None, None, Some(&dir)).expect("paths"),
            None
        );
        std::fs::create_dir_all(dir.join(".kube")).expect("mkdir");
        std::fs::write(dir.join(".kube/config"), "").expect("write");
        assert_eq!(
            kubeconfig_paths(None, None, Some(&dir)).expect("paths"),
            Some(vec![dir.join(".kube/config")])
        );
    }

    #[tokio::test]
    async fn context_flag_selects_cluster_and_unknown_context_lists_defined_ones() {
        let (_guard, dir) = temp_dir("ctx");
        let path = dir.join("config");
        write_kubeconfig(
            &path,
            &[("one", "one.example"), ("two", "two.example")],
            Some("one"),
        );
        let options = |context: Option<&str>| ConnectOptions {
            kubeconfig: Some(path.clone()),
            context: context.map(String::from),
            connect_timeout: None,
            ..Default::default()
        };

        let (config, source) = resolve(&options(None)).await.expect("current context");
        assert_eq!(config.cluster_url.host(), Some("one.example"));
        assert_eq!(
            source,
            KubeconfigSource::Files {
                paths: vec![path.clone()],
                context: "one".into()
            }
        );

        let (config, _) = resolve(&options(Some("two"))).await.expect("--context two");
        assert_eq!(config.cluster_url.host(), Some("two.example"));

        let err = resolve(&options(Some("three"))).await.expect_err("unknown");
        let message = err.to_string();
        assert!(
            message.contains("\"three\"") && message.contains("one, two"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn unparsable_kubeconfig_names_the_file() {
        let (_guard, dir) = temp_dir("bad");
        let path = dir.join("config");
        std::fs::write(&path, "clusters: [unclosed").expect("write");
        let options = ConnectOptions {
            kubeconfig: Some(path.clone()),
            ..Default::default()
        };
        let err = resolve(&options).await.expect_err("must fail");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }
}
