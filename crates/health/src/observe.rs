//! Reading health from a cluster: one object's verdict ([`HealthRules::assess`]), explained by its
//! pods' state when a workload is not Current. The reads go through [`HealthView`]
//! (`capstan_cluster::Cluster` implements it in that crate's adapter module), so the verdicts stay
//! pure and this is testable with a fake.

use std::future::Future;

use capstan_core::ObjectRef;
use capstan_core::api::ClusterError;
use kube::api::DynamicObject;

use crate::{Health, HealthRules, HealthStatus, workloads};

/// What reading health needs from the cluster.
pub trait HealthView {
    /// The live object, or `None` when it does not exist.
    fn read(
        &self,
        object: &ObjectRef,
    ) -> impl Future<Output = Result<Option<DynamicObject>, ClusterError>> + Send;
    /// The Pods matching a label selector, in `namespace` (`None`: every namespace).
    fn pods(
        &self,
        namespace: Option<&str>,
        label_selector: &str,
    ) -> impl Future<Output = Result<Vec<DynamicObject>, ClusterError>> + Send;
}

/// Kinds whose unhealthy verdict is explained better by their pods' state.
const POD_OWNERS: &[&str] = &[
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
];

/// The health of `object` now: NotFound when it does not exist; a workload that is not Current
/// carries its pods' reasons ([`workloads::with_pod_reasons`]).
pub async fn observe<V: HealthView + ?Sized>(
    view: &V,
    object: &ObjectRef,
    rules: &HealthRules,
) -> Result<Health, ClusterError> {
    let Some(live) = view.read(object).await? else {
        return Ok(Health::not_found());
    };
    let health = rules.assess(&live);
    if health.status != HealthStatus::Current
        && POD_OWNERS.contains(&object.kind.as_str())
        && let Some(selector) = workloads::pod_selector(&live)
    {
        let pods = view.pods(object.namespace.as_deref(), &selector).await?;
        return Ok(workloads::with_pod_reasons(health, &pods));
    }
    Ok(health)
}
