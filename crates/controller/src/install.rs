//! `capstan install`: the manifests that run the controller in a cluster — the CRDs (generated from
//! [`crate::api`]), a namespace, a service account with the rights it needs (including
//! `impersonate` on service accounts, for apps that set `serviceAccountName`), the Deployment
//! (two replicas with leader election) and a Service for webhooks and metrics.

use serde_json::{Value, json};

pub struct InstallOptions {
    pub namespace: String,
    pub image: String,
    pub replicas: u32,
}

impl Default for InstallOptions {
    fn default() -> Self {
        Self {
            namespace: "capstan-system".into(),
            image: format!("ghcr.io/capstan-cd/capstan:v{}", env!("CARGO_PKG_VERSION")),
            replicas: 2,
        }
    }
}

/// Every object of an installation, in apply order.
pub fn manifests(options: &InstallOptions) -> Vec<Value> {
    let ns = options.namespace.as_str();
    let labels =
        json!({"app.kubernetes.io/name": "capstan", "app.kubernetes.io/component": "controller"});
    let mut objects: Vec<Value> = crate::api::crds()
        .into_iter()
        .map(|crd| serde_json::to_value(crd).unwrap_or(Value::Null))
        .collect();
    objects.push(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": labels}
    }));
    objects.push(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "capstan-controller", "namespace": ns, "labels": labels}
    }));
    // GitOps applies arbitrary kinds: like Flux and Argo CD, the controller's own identity is
    // cluster-admin. Apps that must be confined set serviceAccountName (impersonation).
    objects.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "capstan-controller", "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "capstan-controller", "namespace": ns}]
    }));
    objects.push(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "capstan-controller", "namespace": ns, "labels": labels},
        "spec": {
            "replicas": options.replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": "capstan-controller",
                    "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                    "terminationGracePeriodSeconds": 60,
                    "containers": [{
                        "name": "controller",
                        "image": options.image,
                        "args": ["controller", "--listen", "0.0.0.0:8080", "--leader-elect",
                                 "--leader-election-namespace", ns, "--cache-dir", "/cache"],
                        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}, {"name": "tmp", "mountPath": "/tmp"}]
                    }],
                    "volumes": [{"name": "cache", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
                }
            }
        }
    }));
    objects.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "capstan-controller", "namespace": ns, "labels": labels},
        "spec": {"selector": labels, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }));
    objects
}

/// The manifests as one YAML stream.
pub fn render_yaml(options: &InstallOptions) -> String {
    manifests(options)
        .iter()
        .map(|object| serde_saphyr::to_string(object).unwrap_or_default())
        .map(|doc| format!("---\n{doc}"))
        .collect()
}
