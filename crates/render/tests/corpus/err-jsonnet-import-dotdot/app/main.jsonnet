// Reaches the corpus directory, then the crate: outside this case's repository root.
{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' }, data: { leak: importstr '../../../Cargo.toml' } }
