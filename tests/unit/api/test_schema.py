"""Schemathesis against the service's own OpenAPI document: no 5xx, responses match the schema."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from dronewatch.api.app import create_app
from dronewatch.api.service import Service
from dronewatch.api.settings import Settings
from tests.service_fixtures import records_of

# The app is made when the module is imported: schemathesis reads its OpenAPI document to make
# one test per operation. What the tests need in the store is added when they run (`admin`), not
# by every worker that collects the module.
_tmp = Path(tempfile.mkdtemp(prefix="dronewatch-schema-"))
_settings = Settings(
    data_dir=_tmp, sse_poll_s=0.05, ingest_writer="thread"
)  # as tests/service_fixtures.py
_service = Service.open(_settings)
app = create_app(_settings, _service)

schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(scope="module")
def admin() -> Iterator[str]:
    """An admin key, over a store with a device in local data mode and the records of a
    capture."""
    try:
        _, key = _service.store.create_key("schema-admin", "admin")
        device = _service.store.create_device({"ip": "10.77.0.2"}, by="test")
        _service.store.set_ldm(device["id"], True, 0.0, by="test")
        _service.ingest("seed", "test", list(records_of("dji_fly_ldm_off.pcap")))
        yield key
    finally:
        _service.close()
        shutil.rmtree(_tmp, ignore_errors=True)


@schema.exclude(path="/api/v1/alerts/stream").parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case, admin: str) -> None:
    """Every operation, with generated input and an admin key, answers within its schema."""
    # The API documents 400 for parameters that are valid alone but not together (since with
    # cursor, a device with neither MAC nor IP), so a 400 on schema-valid input is not a failure.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {admin}"},
        excluded_checks=[positive_data_acceptance],
    )
