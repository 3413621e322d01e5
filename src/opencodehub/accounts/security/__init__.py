"""Account security: two-factor authentication, sudo mode, the security audit log."""
