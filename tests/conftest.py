"""Shared pytest options and fixtures."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("TZ", "UTC")
# Spools and data directories of the agents, replays and services the tests start stay out of the
# home directory, and a run never delivers another run's leftovers.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="dronewatch-test-data-")
# An exception in an analyzer's hook is raised, not counted (dronewatch.core.engine): an analyzer
# that raises fails every test that reaches it. Tests that make one raise on purpose unset it.
os.environ.setdefault("DRONEWATCH_STRICT_ANALYZERS", "1")


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the system tests: everything under tests/system/ (namespaces, live capture, NATS, a
    browser, the service over HTTP) and every test run against the real PostgreSQL. With
    pytest-xdist (`-n 2 --dist loadgroup`, as scripts/test runs) they share one worker, one after
    the other, while the other tests spread over the rest: they start servers and namespaces."""
    system = pytest.mark.system
    one_worker = pytest.mark.xdist_group("system")
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "/tests/system/" in str(item.path) or "postgresql" in params.values():
            item.add_marker(system)
            item.add_marker(one_worker)


pytest_plugins = ["tests.servers", "tests.service_fixtures"]
