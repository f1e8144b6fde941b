{ namespace: 'from-vendor', replicas: 1 }
