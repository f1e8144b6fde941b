local services = { frontend: 80, backend: 8080, cache: 6379 };
local base = {
  kind:: 'Service',
  svc(name, port):: {
    apiVersion: 'v1',
    kind: $.kind,
    metadata: { name: name, labels: { tier: if port < 1024 then 'edge' else 'internal' } },
    spec: { ports: [{ port: port }], selector: { app: name } },
  },
};
local objects = {
  [name]: base.svc(name, services[name]) + { metadata+: { annotations: { index: std.toString(i) } } }
  for i in std.range(0, std.length(std.objectFields(services)) - 1)
  for name in [std.objectFields(services)[i]]
};
std.objectValues(objects) + [
  {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'ports' },
    data: { [k]: std.toString(services[k]) for k in std.objectFields(services) if services[k] > 100 },
    hidden:: 'not rendered',
  },
]
