//! Non-workload kinds with a status worth waiting for: PersistentVolumeClaim, Service (LoadBalancer),
//! Ingress, PodDisruptionBudget, CustomResourceDefinition, Namespace, APIService.
//!
//! Each rule answers "can the objects that depend on this one use it yet?": a claim is bound, a load
//! balancer has an address, a CRD serves its kind, an aggregated API answers.

use kube::api::DynamicObject;

use crate::fields::{self, condition, string};
use crate::{Health, HealthStatus};

/// The rule for one of these kinds, or `None` when `group`/`kind` is not one of them.
pub fn assess(group: &str, kind: &str, object: &DynamicObject) -> Option<Health> {
    Some(match (group, kind) {
        ("", "PersistentVolumeClaim") => persistent_volume_claim(object),
        ("", "Service") => service(object),
        ("networking.k8s.io", "Ingress") => ingress(object),
        ("policy", "PodDisruptionBudget") => pod_disruption_budget(object),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => custom_resource_definition(object),
        ("", "Namespace") => namespace(object),
        ("apiregistration.k8s.io", "APIService") => api_service(object),
        _ => return None,
    })
}

fn persistent_volume_claim(object: &DynamicObject) -> Health {
    match string(object, &["status", "phase"]) {
        Some("Bound") => Health::current("PVC is Bound"),
        // Lost: the bound volume is gone; nothing brings it back without a human (kstatus: InProgress).
        Some("Lost") => Health::failed("PVC lost its volume"),
        // Pending is also what a WaitForFirstConsumer class shows until a Pod uses the claim.
        Some(phase) => Health::in_progress(format!("PVC is not Bound (phase {phase})")),
        None => Health::in_progress("PVC is not Bound yet"),
    }
}

/// `status.loadBalancer.ingress` has at least one address (an IP or a hostname).
fn has_load_balancer_address(object: &DynamicObject) -> bool {
    fields::list(object, &["status", "loadBalancer", "ingress"])
        .iter()
        .any(|entry| {
            ["ip", "hostname"].iter().any(|key| {
                entry
                    .get(key)
                    .and_then(|v| v.as_str())
                    .is_some_and(|v| !v.is_empty())
            })
        })
}

fn service(object: &DynamicObject) -> Health {
    if string(object, &["spec", "type"]) != Some("LoadBalancer") {
        return Health::current("Service is ready");
    }
    if has_load_balancer_address(object) {
        Health::current("load balancer address assigned")
    } else {
        Health::in_progress("waiting for a load balancer address")
    }
}

fn ingress(object: &DynamicObject) -> Health {
    if has_load_balancer_address(object) {
        Health::current("load balancer address assigned")
    } else {
        Health::in_progress("waiting for the ingress controller to publish an address")
    }
}

fn pod_disruption_budget(object: &DynamicObject) -> Health {
    // The disruption controller writes observedGeneration with the counts; before that they are zeros
    // that mean nothing. (The generic rule already covers an observedGeneration that is behind.)
    if fields::int(object, &["status", "observedGeneration"]).is_none() {
        return Health::in_progress("waiting for the disruption controller to observe it");
    }
    let healthy = fields::int(object, &["status", "currentHealthy"]).unwrap_or(0);
    let desired = fields::int(object, &["status", "desiredHealthy"]).unwrap_or(0);
    let allowed = fields::int(object, &["status", "disruptionsAllowed"]).unwrap_or(0);
    Health::current(format!(
        "{healthy}/{desired} healthy pods, {allowed} disruptions allowed"
    ))
}

fn custom_resource_definition(object: &DynamicObject) -> Health {
    if let Some(c) = condition(object, "NamesAccepted").filter(|c| c.is_false()) {
        return Health::failed(format!("names not accepted: {}", c.explanation()));
    }
    match condition(object, "Established") {
        Some(c) if c.is_true() => Health::current("CRD is established"),
        // "Installing" is the normal state for a moment after creation; any other reason is final.
        Some(c) if c.is_false() && c.reason != "Installing" => {
            Health::failed(format!("CRD not established: {}", c.explanation()))
        }
        _ => Health::in_progress("waiting for the CRD to be established"),
    }
}

fn namespace(object: &DynamicObject) -> Health {
    match string(object, &["status", "phase"]) {
        Some("Terminating") => Health::new(HealthStatus::Terminating, "Namespace is terminating"),
        // The API server sets Active on create; a missing phase is an older or hand-made object.
        _ => Health::current("Namespace is active"),
    }
}

fn api_service(object: &DynamicObject) -> Health {
    match condition(object, "Available") {
        Some(c) if c.is_true() => Health::current("APIService is available"),
        // Kept in progress: the backing Pods may still be starting (FailedDiscoveryCheck,
        // MissingEndpoints); the wait timeout turns a lasting failure into an error.
        Some(c) => Health::in_progress(format!("APIService not available: {}", c.explanation())),
        None => Health::in_progress("waiting for the APIService to report availability"),
    }
}

#[cfg(test)]
mod tests {
    use crate::fields::object;
    use crate::{Health, HealthStatus, assess};
    use serde_json::{Value, json};

    fn fixture(
        api_version: &str,
        kind: &str,
        spec: Value,
        status: Value,
    ) -> kube::api::DynamicObject {
        object(json!({
            "apiVersion": api_version, "kind": kind, "metadata": {"name": "x", "generation": 1},
            "spec": spec, "status": status
        }))
    }

    #[test]
    fn pvc_rules() {
        let pvc = |status| fixture("v1", "PersistentVolumeClaim", json!({}), status);
        assert_eq!(
            assess(&pvc(json!({"phase": "Bound"}))),
            Health::current("PVC is Bound")
        );
        assert_eq!(
            assess(&pvc(json!({"phase": "Pending"}))),
            Health::in_progress("PVC is not Bound (phase Pending)")
        );
        assert_eq!(
            assess(&pvc(json!({"phase": "Lost"}))).status,
            HealthStatus::Failed
        );
        assert_eq!(assess(&pvc(json!({}))).status, HealthStatus::InProgress);
    }

    #[test]
    fn load_balancer_service_needs_an_address() {
        let pending = fixture(
            "v1",
            "Service",
            json!({"type": "LoadBalancer"}),
            json!({"loadBalancer": {}}),
        );
        assert_eq!(
            assess(&pending),
            Health::in_progress("waiting for a load balancer address")
        );
        let empty_entry = fixture(
            "v1",
            "Service",
            json!({"type": "LoadBalancer"}),
            json!({"loadBalancer": {"ingress": [{"ip": ""}]}}),
        );
        assert_eq!(assess(&empty_entry).status, HealthStatus::InProgress);
        let ready = fixture(
            "v1",
            "Service",
            json!({"type": "LoadBalancer"}),
            json!({"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}]}}),
        );
        assert_eq!(assess(&ready).status, HealthStatus::Current);
        let cluster_ip = fixture("v1", "Service", json!({"type": "ClusterIP"}), json!({}));
        assert_eq!(assess(&cluster_ip), Health::current("Service is ready"));
    }

    #[test]
    fn ingress_needs_an_address() {
        let ingress = |status| fixture("networking.k8s.io/v1", "Ingress", json!({}), status);
        assert_eq!(assess(&ingress(json!({}))).status, HealthStatus::InProgress);
        assert_eq!(
            assess(&ingress(
                json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.7"}]}})
            ))
            .status,
            HealthStatus::Current
        );
    }

    #[test]
    fn pdb_waits_for_its_controller() {
        let pdb = |status| fixture("policy/v1", "PodDisruptionBudget", json!({}), status);
        assert_eq!(assess(&pdb(json!({}))).status, HealthStatus::InProgress);
        assert_eq!(
            assess(&pdb(
                json!({"observedGeneration": 1, "currentHealthy": 2, "desiredHealthy": 1,
                "disruptionsAllowed": 1})
            )),
            Health::current("2/1 healthy pods, 1 disruptions allowed")
        );
    }

    #[test]
    fn crd_rules() {
        let crd = |conditions| {
            fixture(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                json!({}),
                json!({"conditions": conditions}),
            )
        };
        assert_eq!(
            assess(&crd(
                json!([{"type": "NamesAccepted", "status": "True"}, {"type": "Established", "status": "True"}])
            )),
            Health::current("CRD is established")
        );
        assert_eq!(
            assess(&crd(
                json!([{"type": "Established", "status": "False", "reason": "Installing"}])
            ))
            .status,
            HealthStatus::InProgress
        );
        assert_eq!(
            assess(&crd(
                json!([{"type": "NamesAccepted", "status": "False", "reason": "MultipleNames",
                "message": "\"widgets\" is already in use"}])
            )),
            Health::failed("names not accepted: MultipleNames: \"widgets\" is already in use")
        );
        assert_eq!(assess(&crd(json!([]))).status, HealthStatus::InProgress);
    }

    #[test]
    fn namespace_rules() {
        let ns = |status| fixture("v1", "Namespace", json!({}), status);
        assert_eq!(
            assess(&ns(json!({"phase": "Active"}))),
            Health::current("Namespace is active")
        );
        assert_eq!(
            assess(&ns(json!({"phase": "Terminating"}))).status,
            HealthStatus::Terminating
        );
    }

    #[test]
    fn api_service_rules() {
        let api = |conditions| {
            fixture(
                "apiregistration.k8s.io/v1",
                "APIService",
                json!({}),
                json!({"conditions": conditions}),
            )
        };
        assert_eq!(
            assess(&api(
                json!([{"type": "Available", "status": "True", "reason": "Local"}])
            ))
            .status,
            HealthStatus::Current
        );
        assert_eq!(
            assess(&api(
                json!([{"type": "Available", "status": "False", "reason": "MissingEndpoints",
                "message": "endpoints for service/metrics-server in \"kube-system\" have no addresses"}])
            )),
            Health::in_progress(
                "APIService not available: MissingEndpoints: endpoints for service/metrics-server in \"kube-system\" have no addresses"
            )
        );
        assert_eq!(assess(&api(json!(null))).status, HealthStatus::InProgress);
    }
}
