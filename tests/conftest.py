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


def is_system(nodeid: str) -> bool:
    """A system test: everything under tests/system/ (namespaces, live capture, NATS, a browser,
    the service over HTTP) and every test run against the real PostgreSQL (the `postgresql`
    parameter of the service fixtures)."""
    if nodeid.startswith("tests/system/"):
        return True
    params = nodeid.rpartition("[")[2].rstrip("]") if nodeid.endswith("]") else ""
    return "postgresql" in params.split("-")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the system tests (`-m system`, `-m "not system"`)."""
    for item in items:
        if is_system(item.nodeid):
            item.add_marker(pytest.mark.system)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """With pytest-xdist (`-n 2 --dist loadgroup`, as scripts/test runs) the system tests share one
    worker, one after the other, while the other tests spread over the rest: they start servers
    and fixed-name network namespaces. The group is decided here from the test's id, not from an
    `xdist_group` mark: pytest 9 no longer lets pytest-xdist rename a test by its group, and the
    lab tests then ran on two workers at once and tore down each other's namespaces."""
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SystemTogether(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "system" if is_system(nodeid) else nodeid

    return SystemTogether(config, log)  # type: ignore[arg-type]


pytest_plugins = ["tests.servers", "tests.service_fixtures"]
