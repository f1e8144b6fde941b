{
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name: 'nginx-files' },
  data: {
    'nginx.conf': importstr 'files/nginx.conf',
    'start.sh': importstr './files/start.sh',
    lines: std.toString(std.length(std.split(importstr 'files/nginx.conf', '\n'))),
  },
}
