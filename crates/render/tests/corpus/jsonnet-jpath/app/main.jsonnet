local cm = import 'k/cm.libsonnet';
local config = import 'k/config.libsonnet';
cm.configMap('settings', { replicas: std.toString(config.replicas), ns: config.namespace })
