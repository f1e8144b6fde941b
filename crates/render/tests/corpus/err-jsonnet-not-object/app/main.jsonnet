[
  { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ok' } },
  42,
]
