local cm(name) = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name }, data: { n: name } };
[
  cm('first'),
  [cm('nested-' + i) for i in std.range(1, 3)],
  [[cm('deep')]],
  null,
  {
    apiVersion: 'v1',
    kind: 'List',
    items: [cm('in-list-a'), cm('in-list-b')],
  },
  { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'arrays' } },
]
