local labels = import '../../shared/labels.libsonnet';
{
  deployment(name, image, replicas=1):: {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: name, labels: labels.common(name) },
    spec: {
      replicas: replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: name, image: image, ports: [{ containerPort: 8080 }] }] },
      },
    },
  },
  service(name, port=80):: {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: name, labels: labels.common(name) },
    spec: { selector: { app: name }, ports: [{ port: port, targetPort: 8080 }] },
  },
}
