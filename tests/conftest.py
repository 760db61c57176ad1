"""Shared pytest options and fixtures."""

from __future__ import annotations

import gc
import os
import tempfile

import pytest

os.environ.setdefault("TZ", "UTC")
# Spools and data directories of the agents, replays and services the tests start stay out of the
# home directory, and a run never delivers another run's leftovers.
os.environ["XDG_DATA_HOME"] = tempfile.mkdtemp(prefix="dronewatch-test-data-")
# The validated rule packs are cached (`rulepack.load_packs`) in a directory of the run's own: the
# bundled packs are parsed once per run, by whichever test or process loads them first.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="dronewatch-test-cache-")
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
    """Mark the system tests (`-m system`, `-m "not system"`), and give each operation of a
    schemathesis test its own id."""
    for item in items:
        # schemathesis names an operation's item `test[GET /path]`, but pytest 9 makes the id from
        # the function's name alone: every operation had the same id, and the loadgroup scheduler,
        # which keeps the tests it hands out by id, ran one of them.
        label = getattr(item, "operation_label", None)
        if isinstance(label, str) and item.name.endswith(f"[{label}]") and "[" not in item.nodeid:
            item._id = item._id.with_params(label)
        if is_system(item.nodeid):
            item.add_marker(pytest.mark.system)


SHARING = (
    # The analyzers' tests of the flight capture share its decoded packets
    # (`tests.factories.decoded`).
    ("::test_capture_flight5[", "flight5-decoded"),
    # The flight replayed once into a service (`flight_once`, a module fixture).
    ("test_replay.py::test_recovery_after_a_crash", "flight5-replayed"),
    ("test_replay.py::test_lookup_alerts_do_not_depend_on_batch_cuts", "flight5-replayed"),
)
"""Tests that share what one of them computes in its process (a cache or a module fixture), so
the scheduler gives them to one worker: (part of the test id, group)."""


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
            if is_system(nodeid):
                return "system"
            return next((group for part, group in SHARING if part in nodeid), nodeid)

    return SystemTogether(config, log)  # type: ignore[arg-type]


def pytest_collection_finish(session: pytest.Session) -> None:
    """What import and collection made (modules, test items, parametrized captures) lives for the
    whole session: frozen, the garbage collector stops walking it again in every full collection
    while the tests run."""
    gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    """The interpreter's last garbage collection at exit walks every object still alive (cached
    analyses, records, services): over a second per xdist worker, all of it garbage the process
    is about to drop. Frozen, the objects are left to the exit."""
    gc.freeze()


pytest_plugins = ["tests.servers", "tests.service_fixtures"]
