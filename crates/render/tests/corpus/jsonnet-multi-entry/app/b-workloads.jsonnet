local common = import 'common.libsonnet';
[
  { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'runner', namespace: common.namespace } },
  { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'runner', namespace: common.namespace }, data: { a: 'b' } },
]
