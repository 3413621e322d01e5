"""OpenCodeHub as an OAuth 2 provider: registered apps, consent, scoped tokens, revocation."""
