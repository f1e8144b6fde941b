{ namespace: 'multi' }
