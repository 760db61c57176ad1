"""Where dronewatch keeps its files by default: one home for the service, the agent and the
caches."""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> Path:
    """`$XDG_DATA_HOME/dronewatch`, else `~/.local/share/dronewatch`."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dronewatch"


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/dronewatch`, else `~/.cache/dronewatch`: what can be made again (the
    validated rule packs, `dronewatch.judge.rulepack.load_packs`)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dronewatch"
