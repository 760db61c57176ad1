"""Shared pytest options and fixtures."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TZ", "UTC")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/ from the current output (review the diff like code)",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when the run was asked to rewrite golden files."""
    return bool(request.config.getoption("--update-golden"))


pytest_plugins = ["tests.servers"]
