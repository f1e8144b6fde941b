{
  configMap(name, data):: {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: name, namespace: (import 'k/config.libsonnet').namespace },
    data: data,
  },
}
