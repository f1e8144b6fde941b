(import 'base.libsonnet') + { metadata+: { name: 'dev-config' }, data+: { env: 'dev' } }
