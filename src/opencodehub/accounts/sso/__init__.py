"""Sign-in with external identity providers: GitHub, GitLab and OpenID Connect."""
