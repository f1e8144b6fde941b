local check(n) = if n > 2 then error 'replicas %d over the budget' % n else n;
{
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'x' },
  spec: { replicas: check(5) },
}
