"""What an agent may send to /api/v1/ingest: the pipeline's own records, checked field by field.

Each record type's schema is its record class (`dronewatch.core.hooks.Record` subclasses, one per
JSONL log), turned into a pydantic model here, so the schema has one home. A batch is taken whole
or refused whole: a record with a wrong type, a missing field or an unknown field is refused with
the path of the field (`records.<i>.<field>`), and what is stored is the record as its class
writes it, never the bytes as sent. Alerts and verdicts are the service's own judgement: agents
send observations, and a batch that carries judgement records is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

import dronewatch.analyzers  # noqa: F401 - defines the analyzers' record classes
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import CaptureRecord
from dronewatch.exceptions import RecordError
from dronewatch.judge.alert import JUDGEMENT_LOGS, SEVERITIES
from dronewatch.judge.egress import EgressRecord
from dronewatch.judge.evidence import EvidenceRecord
from dronewatch.judge.flowlog import FlowRecord
from dronewatch.judge.monitor import DeviceRecord


@functools.cache
def observation_types() -> dict[str, type[Record]]:
    """Every record type an agent may send, by log name: the pipeline's records (the analyzers'
    logs and capture, devices, flows, egress, evidence), not the service's judgement."""
    found: dict[str, type[Record]] = {}
    todo: list[type[Record]] = [Record]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if (
            cls.log
            and cls.log not in JUDGEMENT_LOGS
            and not getattr(cls, "__abstractmethods__", None)
        ):
            found.setdefault(cls.log, cls)
    for required in (CaptureRecord, DeviceRecord, FlowRecord, EgressRecord, EvidenceRecord):
        assert found.get(required.log) is required, required
    return found


_MODELS: dict[str, type[BaseModel]] = {}

COUNT_FIELDS = frozenset(
    {
        "packets",
        "bytes",
        "ip_packets",
        "flows",
        "malformed",
        "fragments",
        "truncated",
        "drops",
        "open_flows",
        "evicted_flows",
        "gap_flows",
        "missed_bytes",
        "inspection_stopped",
        "bad_checksums",
        "encrypted",
        "on_link_refused",
        "orig_pkts",
        "resp_pkts",
        "orig_bytes",
        "resp_bytes",
        "orig_payload_bytes",
        "resp_payload_bytes",
        "pkts_out",
        "pkts_in",
        "bytes_out",
        "bytes_in",
        "analyzer_errors",
    }
)
"""Counts of packets, bytes, flows and failures, in whichever log has them (the values of
`analyzer_errors` too): never below 0. The service sums them into coverage, verdicts and its
counters, which a negative count would corrupt (a Prometheus counter refuses one)."""
PORT_FIELDS = frozenset({"orig_p", "resp_p", "dest_port"})
"""Transport ports (or ICMP type and code): 0 to 65535."""
DURATION_FIELDS = frozenset({"duration_s"})
"""Durations: never below 0 (a flow's ends at `ts + duration_s`, which the service's windows
and timelines start from)."""

SEVERITY_FIELDS = frozenset({"severity"})
"""A rule's severity, which an alert raised on the record takes: one of `SEVERITIES` (the sinks
and exports score it)."""

UID_FIELDS = frozenset({"uid"})
"""A flow's uid (`C` and base-32 letters as the engine makes them): the key flows, egress
observations and evidence are stored and matched under, so nothing else may pass for one."""

_UID = Annotated[str, Field(pattern=r"^[A-Za-z0-9]{1,32}$")]
_COUNT = Annotated[int, Field(ge=0)]
_PORT = Annotated[int, Field(ge=0, le=65535)]
_DURATION = Annotated[float, Field(ge=0)]


def _bounded(name: str, hint: Any) -> Any:
    """The field's type with the bounds its name implies (`COUNT_FIELDS`, `PORT_FIELDS`,
    `DURATION_FIELDS`, `SEVERITY_FIELDS`)."""
    if name in DURATION_FIELDS and hint is float:
        return _DURATION
    if name in UID_FIELDS and hint is str:
        return _UID
    if name in SEVERITY_FIELDS and str in typing.get_args(hint) + (hint,):
        severity: Any = Literal[SEVERITIES]
        return severity | None if type(None) in typing.get_args(hint) else severity
    bound = _COUNT if name in COUNT_FIELDS else _PORT if name in PORT_FIELDS else None
    if bound is None:
        return hint
    optional = type(None) in typing.get_args(hint)
    inner = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    if inner is int:
        bounded: Any = bound
    elif typing.get_origin(inner) is dict and typing.get_args(inner) == (str, int):
        bounded = dict[str, bound]  # type: ignore[valid-type]
    else:
        return hint
    return bounded | None if optional else bounded


def _model(record_type: type[Record]) -> type[BaseModel]:
    """A pydantic model with the fields of a record class (no extra fields, no coercion of
    numbers into text, no negative count or port out of range)."""
    model = _MODELS.get(record_type.log)
    if model is not None:
        return model
    hints = typing.get_type_hints(record_type)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(record_type):
        hint = _bounded(f.name, hints[f.name])
        if type(None) in typing.get_args(hints[f.name]):
            # `to_dict` leaves None out, so a field that may be None may be missing.
            fields[f.name] = (hint, None if f.default is dataclasses.MISSING else f.default)
        elif f.default is not dataclasses.MISSING:
            fields[f.name] = (hint, f.default)
        elif f.default_factory is not dataclasses.MISSING:
            fields[f.name] = (hint, f.default_factory())
        else:
            fields[f.name] = (hint, ...)
    model = create_model(
        f"{record_type.__name__}In",
        __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
        **fields,
    )
    _MODELS[record_type.log] = model
    return model


def validate_records(records: Sequence[Any]) -> list[dict[str, Any]]:
    """The records of a batch as their classes write them; raises RecordError naming every
    field that is wrong."""
    types = observation_types()
    errors: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for i, rec in enumerate(records):
        loc: tuple[str | int, ...] = ("records", i)
        if not isinstance(rec, dict):
            errors.append({"loc": loc, "msg": "a record is a JSON object", "type": "dict_type"})
            continue
        log = rec.get("log")
        if log in JUDGEMENT_LOGS:
            errors.append(
                {
                    "loc": (*loc, "log"),
                    "msg": f"{log} are the service's own judgement; agents send observations",
                    "type": "judgement_record",
                }
            )
            continue
        record_type = types.get(log) if isinstance(log, str) else None
        if record_type is None:
            errors.append(
                {
                    "loc": (*loc, "log"),
                    "msg": f"unknown log {log!r}; one of {', '.join(sorted(types))}",
                    "type": "unknown_log",
                }
            )
            continue
        try:
            fields = _model(record_type).model_validate(
                {k: v for k, v in rec.items() if k != "log"}
            )
        except ValidationError as exc:
            errors.extend(
                {"loc": (*loc, *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()
            )
            continue
        record = record_type(**fields.model_dump())
        doc = {"log": record.log, **record.to_dict()}
        last = doc.get("last_ts")
        if last is not None and last < doc.get("ts", last):
            # What a record saw ends at or after it began: a span the other way round would
            # turn the service's windows and timelines inside out.
            errors.append(
                {"loc": (*loc, "last_ts"), "msg": "last_ts is before ts", "type": "time_order"}
            )
            continue
        out.append(doc)
    if errors:
        raise RecordError(errors)
    return out
