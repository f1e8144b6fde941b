{
  web: { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' } },
  db: { apiVersion: 'v1', kind: 'Service', metadata: { name: 'db' } },
}
