"""Small shared pieces: errors, pagination, crypto, time. Nothing domain-specific lives here."""
