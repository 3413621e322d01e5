"""Background jobs of this domain (see core/background.py)."""

from __future__ import annotations
