"""Where dronewatch keeps its files by default: one home for the service and the agent."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """`$XDG_DATA_HOME/dronewatch`, else `~/.local/share/dronewatch`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dronewatch"
