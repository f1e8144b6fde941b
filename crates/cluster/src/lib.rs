//! The only crate in Capstan that talks to the Kubernetes API.
//!
//! It owns how a connection is made (kubeconfig, context and in-cluster selection, the way kubectl
//! does it) and the questions Capstan asks the API server. Later stages reach the cluster only through
//! the [`Cluster`] handle, so timeouts, the field manager and error wording live in one place. The
//! stages name what they need as traits of their own; `stages` implements those for `Cluster`.

mod config_maps;
mod connect;
mod first_contact;
mod resources;
mod stages;
mod throttle;

// The API words the stages share with this crate live in `capstan-core`, so the stages need not
// depend on it; re-exported so `capstan_cluster::ClusterError` and friends keep working.
pub use capstan_core::api::{
    ClusterError, Deleted, FIELD_IMMUTABLE_MESSAGE, FIELD_MANAGER, Ownership, PropagationPolicy,
    is_immutable_cause,
};
pub use connect::{ConnectOptions, KubeconfigSource, RequestObserver};
pub use resources::ResolvedKind;
pub use throttle::RateLimit;

use std::sync::Arc;

use first_contact::{FirstContact, FirstContactLayer};
use k8s_openapi::apimachinery::pkg::version::Info;
use throttle::{ThrottleLayer, TokenBucket};

/// rustls needs one process-wide crypto provider; with both ring (kube) and aws-lc-rs (reqwest, used
/// by gix) in the build it cannot pick one itself. The first connection picks ring.
fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first: that one serves just as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn build_client(
    config: kube::Config,
    observe: Option<RequestObserver>,
    throttle: Option<&TokenBucket>,
    first_contact: &Arc<FirstContact>,
) -> Result<kube::Client, ClusterError> {
    let server = config.cluster_url.to_string();
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|source| ClusterError::Client {
            server: server.clone(),
            source,
        })?
        .with_layer(&FirstContactLayer(Arc::clone(first_contact)))
        .with_layer(&tower::util::option_layer(
            throttle.cloned().map(ThrottleLayer),
        ));
    Ok(match observe {
        None => builder.build(),
        Some(observe) => builder
            .with_layer(&tower::util::MapRequestLayer::new(
                move |request: http::Request<kube::client::Body>| {
                    observe(connect::request_verb(&request));
                    request
                },
            ))
            .build(),
    })
}

/// A connection to one cluster: a client plus where it came from, for messages.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    /// Kept to derive impersonating connections from.
    config: kube::Config,
    observe_request: Option<RequestObserver>,
    /// The rate limit, shared with every connection derived from this one.
    throttle: Option<TokenBucket>,
    /// Whether the server has answered yet, shared likewise.
    first_contact: Arc<FirstContact>,
    server_url: String,
    source: KubeconfigSource,
    discovery: resources::DiscoveryCache,
}

impl Cluster {
    /// Connects the way kubectl does; see [`ConnectOptions`].
    pub async fn connect(options: &ConnectOptions) -> Result<Self, ClusterError> {
        install_crypto_provider();
        let (config, source) = connect::resolve(options).await?;
        let server_url = config.cluster_url.to_string();
        let throttle = options.rate_limit.and_then(TokenBucket::new);
        let first_contact = FirstContact::new(server_url.clone(), config.connect_timeout);
        let client = build_client(
            config.clone(),
            options.observe_request.clone(),
            throttle.as_ref(),
            &first_contact,
        )?;
        Ok(Self {
            client,
            config,
            observe_request: options.observe_request.clone(),
            throttle,
            first_contact,
            server_url,
            source,
            discovery: Default::default(),
        })
    }

    /// The same cluster, with every request made as `user` (e.g.
    /// `system:serviceaccount:<namespace>:<name>`, whose groups the API server adds itself). The
    /// connection's own identity needs the `impersonate` verb on that user.
    pub fn impersonate(&self, user: &str) -> Result<Self, ClusterError> {
        let mut config = self.config.clone();
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups = None;
        Ok(Self {
            client: build_client(
                config.clone(),
                self.observe_request.clone(),
                self.throttle.as_ref(),
                &self.first_contact,
            )?,
            config,
            observe_request: self.observe_request.clone(),
            throttle: self.throttle.clone(),
            first_contact: Arc::clone(&self.first_contact),
            server_url: self.server_url.clone(),
            source: self.source.clone(),
            discovery: Default::default(),
        })
    }

    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The API server URL, as written in the kubeconfig.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// Which kubeconfig (or in-cluster service account) the connection came from.
    pub fn source(&self) -> &KubeconfigSource {
        &self.source
    }

    /// The API server's `/version`.
    pub async fn server_version(&self) -> Result<Info, ClusterError> {
        self.client
            .apiserver_version()
            .await
            .map_err(|source| ClusterError::Request {
                server: self.server_url.clone(),
                what: "GET /version".into(),
                source,
            })
    }

    /// The API server's refusal as [`ClusterError::Rejected`] (its message names the fields), anything
    /// else as a transport-level [`ClusterError::Request`].
    fn api_error(&self, verb: &str, object: String, source: kube::Error) -> ClusterError {
        match source {
            kube::Error::Api(status) => ClusterError::Rejected {
                verb: verb.to_string(),
                object,
                code: status.code,
                reason: status.reason.clone(),
                message: status.message.clone(),
                causes: status
                    .details
                    .as_ref()
                    .map(|details| details.causes.clone())
                    .unwrap_or_default(),
            },
            other => ClusterError::Request {
                server: self.server_url.clone(),
                what: format!("{verb} {object}"),
                source: other,
            },
        }
    }
}
