{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: (import 'x.libsonnet').name } }
