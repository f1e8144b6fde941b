{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'base' }, data: { shared: 'yes' } }
