local k = import 'lib/k8s.libsonnet';
[
  k.deployment('web', 'nginx:1.27', replicas=3),
  k.service('web'),
  k.deployment('api', 'example/api:2.0') + { spec+: { template+: { spec+: { serviceAccountName: 'api' } } } },
]
