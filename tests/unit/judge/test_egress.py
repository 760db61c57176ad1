"""Egress observations: what counts as an attempt, and how attempts fold into alerts."""

from __future__ import annotations

import pytest

from dronewatch.judge.alert import NOTE_ATTEMPT, NOTE_DNS, NOTE_LEAK
from dronewatch.judge.egress import (
    ATTEMPT_MAX_UDP_BYTES,
    KIND_ATTEMPT,
    KIND_FLOW,
    KIND_LOOKUP,
    EgressBook,
    EgressRecord,
    judge_device,
    unanswered_attempt,
)
from dronewatch.judge.policy import DevicePolicy


@pytest.mark.parametrize(
    ("proto", "service", "pkts_in", "payload", "attempt"),
    [
        ("tcp", "", 0, 0, True),  # SYNs nobody answered
        ("tcp", "", 0, 1, False),  # data on a one-way (mirror-port) view: it left
        ("tcp", "", 1, 0, False),  # answered (a RST counts: somebody was there)
        ("udp", "quic", 0, 3_600, True),  # padded Initials, retried
        ("udp", "dns", 0, 5_000, True),
        ("udp", "", 0, ATTEMPT_MAX_UDP_BYTES, True),
        ("udp", "", 0, ATTEMPT_MAX_UDP_BYTES + 1, False),  # could hold data: it left
        ("icmp", "", 0, 56, True),
    ],
)
def test_unanswered_attempt(
    proto: str, service: str, pkts_in: int, payload: int, attempt: bool
) -> None:
    assert unanswered_attempt(proto, service, pkts_in, payload) is attempt


def obs(kind: str, dest_ip: str, name: str | None, ts: float, **kw: object) -> EgressRecord:
    fields: dict[str, object] = {
        "ts": ts,
        "last_ts": ts,
        "uid": f"C{ts}",
        "kind": kind,
        "host_ip": "192.168.0.20",
        "dest_ip": dest_ip,
        "dest_port": 443 if kind != KIND_LOOKUP else 53,
        "proto": "tcp" if kind != KIND_LOOKUP else "udp",
        "bytes_out": 0,
        "bytes_in": 0,
        "pkts_out": 1,
        "pkts_in": 0,
        "category": "other",
        "dest_name": name,
    }
    fields.update(kw)
    return EgressRecord(**fields)  # type: ignore[arg-type]


def judge(*observations: EgressRecord) -> list[tuple[str, str]]:
    book = EgressBook()
    for o in observations:
        book.add(o, ldm=True)
    (entries,) = book.by_host().values()
    alerts = judge_device(entries, DevicePolicy(ldm=True), None).alerts
    return sorted((a.note, a.dest_name or a.dest_ip or "") for a in alerts)


def test_an_attempt_on_a_destination_then_reached_is_part_of_the_leak() -> None:
    assert judge(
        obs(KIND_LOOKUP, "192.168.0.1", "api.example", 1.0),
        obs(KIND_ATTEMPT, "203.0.113.5", "api.example", 2.0),
        obs(KIND_FLOW, "203.0.113.5", "api.example", 3.0, bytes_out=900, pkts_in=3),
    ) == [(NOTE_LEAK, "api.example")]


def test_a_lookup_then_tried_is_one_attempt() -> None:
    assert judge(
        obs(KIND_LOOKUP, "192.168.0.1", "api.example", 1.0),
        obs(KIND_ATTEMPT, "203.0.113.5", "api.example", 2.0),
        obs(KIND_LOOKUP, "192.168.0.1", "other.example", 3.0),
    ) == [(NOTE_ATTEMPT, "api.example"), (NOTE_ATTEMPT, "other.example")]


def test_a_vendor_lookup_stays_a_violation() -> None:
    vendor = {"rule_id": "dji.api", "vendor": "DJI", "behavioural": False}
    assert judge(obs(KIND_LOOKUP, "192.168.0.1", "api.dji.com", 1.0, **vendor)) == [
        (NOTE_DNS, "api.dji.com")
    ]


def test_the_earliest_observation_names_the_address_in_any_order() -> None:
    """Lookups of one name through two resolvers: the alert names the first one's, whatever
    order the observations arrive in (the service may get them in any order)."""
    a = obs(KIND_LOOKUP, "8.8.8.8", "www.example", 1.0)
    b = obs(KIND_LOOKUP, "8.8.4.4", "www.example", 2.0)
    for order in ((a, b), (b, a)):
        book = EgressBook()
        for o in order:
            book.add(o, ldm=True)
        (entry,) = book.by_host()["192.168.0.20"]
        assert (entry.dest_ip, entry.first, entry.flows) == ("8.8.8.8", 1.0, 2)
