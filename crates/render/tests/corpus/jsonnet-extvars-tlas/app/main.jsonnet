function(namespace, replicas=1, settings={ tier: 'none' })
  local env = std.extVar('env');
  local features = std.extVar('features');
  [
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'svc-' + env, namespace: namespace, labels: { env: env, tier: settings.tier } },
      spec: {
        replicas: replicas,
        selector: { matchLabels: { app: 'svc' } },
        template: {
          metadata: { labels: { app: 'svc' } },
          spec: {
            containers: [{
              name: 'svc',
              image: 'example/svc:1',
              env: [{ name: 'FEATURE_' + std.asciiUpper(f), value: 'on' } for f in features],
            }],
          },
        },
      },
    },
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'svc-settings', namespace: namespace },
      data: { settings: std.manifestJsonEx(settings, '  '), debug: std.toString(std.extVar('debug')) },
    },
  ]
