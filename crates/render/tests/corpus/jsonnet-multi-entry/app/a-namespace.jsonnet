{ apiVersion: 'v1', kind: 'Namespace', metadata: { name: (import 'common.libsonnet').namespace } }
