"""OpenCodeHub: a self-hosted git forge."""

__version__ = "0.1.0"

from opencodehub.core import lazy as _lazy

# libgit2's bindings load when a repository is first touched, not when the app starts
# (core/lazy.py says why and how).
_lazy.defer("pygit2")
