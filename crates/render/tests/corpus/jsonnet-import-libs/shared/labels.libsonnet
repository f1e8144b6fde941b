// Shared outside the app directory, still inside the repository.
{
  common(app):: { 'app.kubernetes.io/name': app, 'app.kubernetes.io/managed-by': 'capstan' },
}
