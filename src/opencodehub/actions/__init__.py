"""Workflow model, expressions, triggers, scheduling, the runner API, logs and secrets."""
