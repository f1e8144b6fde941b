(import 'base.libsonnet') + { metadata+: { name: 'prod-config' }, data+: { env: 'prod' } }
