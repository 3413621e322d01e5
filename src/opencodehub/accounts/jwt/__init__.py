"""Short-lived signed access tokens (JWT), their signing keys and the JWKS endpoint."""
