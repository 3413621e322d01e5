"""OpenCodeHub: a self-hosted git forge."""

__version__ = "0.1.0"
