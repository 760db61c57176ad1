"""The default data directory, shared by the service and the agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from dronewatch.api.settings import Settings
from dronewatch.paths import default_data_dir


def test_data_dir_follows_xdg_data_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`$XDG_DATA_HOME/dronewatch` when the variable is set, and the service uses the same."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "dronewatch"
    assert Settings().data_dir == tmp_path / "dronewatch"


def test_data_dir_falls_back_to_local_share(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without `$XDG_DATA_HOME`, `~/.local/share/dronewatch`."""
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / ".local" / "share" / "dronewatch"
