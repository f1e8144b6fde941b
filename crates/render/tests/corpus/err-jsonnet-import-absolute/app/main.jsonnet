{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, data: { leak: importstr '/etc/hostname' } }
