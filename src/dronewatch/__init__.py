"""dronewatch: check on the wire that drone apps keep their local-data-mode promise."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
