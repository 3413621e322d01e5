"""Avatars of users and organizations: uploads made safe, identicons, optional Gravatar."""
