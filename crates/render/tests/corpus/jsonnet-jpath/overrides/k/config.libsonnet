// Also in vendor/: the right-most library directory wins.
(import '../../vendor/k/config.libsonnet') + { namespace: 'from-overrides' }
