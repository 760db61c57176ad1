"""Community ID v1 against the specification's published example values."""

from __future__ import annotations

import random

import pytest

from dronewatch.core.community_id import community_hash_py, community_id
from dronewatch.fastpath import _fastpath
from tests.factories import ip


@pytest.mark.parametrize(
    ("proto", "src", "sport", "dst", "dport", "expected"),
    [
        (6, "128.232.110.120", 34855, "66.35.250.204", 80, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        (6, "66.35.250.204", 80, "128.232.110.120", 34855, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        (17, "192.168.1.52", 54585, "8.8.8.8", 53, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    ],
)
def test_spec_vectors(
    proto: int, src: str, sport: int, dst: str, dport: int, expected: str
) -> None:
    """Known flows hash to the spec's values in both directions."""
    assert community_id(proto, ip(src), sport, ip(dst), dport) == expected


def test_icmp_echo_pairs_are_bidirectional() -> None:
    """An ICMP echo request and its reply share one Community ID."""
    req = community_id(1, ip("10.0.0.1"), 8, ip("10.0.0.2"), 0)
    rep = community_id(1, ip("10.0.0.2"), 0, ip("10.0.0.1"), 0)
    assert req == rep


def test_seed_changes_the_hash() -> None:
    """A different seed gives a different ID."""
    a = community_id(17, ip("1.1.1.1"), 1, ip("2.2.2.2"), 2)
    assert a != community_id(17, ip("1.1.1.1"), 1, ip("2.2.2.2"), 2, seed=1)


def _spec_rows(name: str) -> list[dict[str, object]]:
    """The rows of a baseline file of the specification (corelight/community-id-spec)."""
    import json
    from pathlib import Path

    return list(json.loads((Path(__file__).parent / "data" / name).read_text()))


@pytest.mark.parametrize(
    ("name", "seed"),
    [("community_id_baseline_deflt.json", 0), ("community_id_baseline_seed1.json", 1)],
)
def test_every_spec_baseline_row(name: str, seed: int) -> None:
    """Every row of the specification's baselines (ICMP, ICMPv6, TCP, UDP, SCTP, RSVP; default
    and seed 1) gives the specification's Community ID."""
    rows = _spec_rows(name)
    assert len(rows) == 23
    for row in rows:
        got = community_id(
            int(row["proto"]),  # type: ignore[call-overload]
            ip(str(row["saddr"])),
            int(row["sport"] or 0),  # type: ignore[call-overload]
            ip(str(row["daddr"])),
            int(row["dport"] or 0),  # type: ignore[call-overload]
            seed,
        )
        assert got == row["communityid"], row


def test_protocol_without_ports_hashes_no_port_bytes() -> None:
    """RSVP (46) hashes addresses and protocol only: ports given or not change nothing."""
    a = community_id(46, ip("10.1.12.1"), 0, ip("10.1.12.2"), 0)
    assert a == "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw="
    assert community_id(46, ip("10.1.12.1"), 7, ip("10.1.12.2"), 9) == a


def test_icmpv6_home_agent_discovery_pairs() -> None:
    """ICMPv6 144/145 (and 139/140) are request/reply pairs: one ID both ways."""
    for req, rep in ((144, 145), (139, 140)):
        there = community_id(58, ip("fe80::1"), req, ip("fe80::2"), 0)
        back = community_id(58, ip("fe80::2"), rep, ip("fe80::1"), 0)
        assert there == back


def test_flows_of_the_spec_captures_carry_the_spec_ids() -> None:
    """Running the specification's own captures, the Community IDs of the flows are exactly the
    ones its baseline lists for their packets (the engine pairs ICMP as the spec does)."""
    from dronewatch.capture.files import FileSource
    from dronewatch.core.pipeline import AnalysisConfig, run_source
    from dronewatch.judge.flowlog import FlowRecord
    from tests.pcaps import THIRD_PARTY, all_captures

    ids: set[str] = set()
    for path in all_captures(THIRD_PARTY / "community-id-spec"):
        run_source(
            FileSource(str(path)),
            lambda r: ids.add(r.community_id) if isinstance(r, FlowRecord) else None,
            AnalysisConfig(),
        )
    assert ids == {
        str(row["communityid"]) for row in _spec_rows("community_id_baseline_deflt.json")
    }


def test_c_and_python_hashes_agree() -> None:
    """The C extension's Community ID hash and the Python twin's are the same text, with and
    without ports, for IPv4 and IPv6 and any seed; a malformed address is refused in C."""
    rng = random.Random(5)
    for _ in range(3000):
        size = rng.choice((4, 16))
        args = (
            rng.randrange(65536),
            rng.randbytes(size),
            rng.randbytes(size),
            rng.randrange(256),
            rng.randrange(65536),
            rng.randrange(65536),
            rng.random() < 0.5,
        )
        assert _fastpath.community_hash(*args) == community_hash_py(*args)
    with pytest.raises(ValueError, match="4 or 16 bytes"):
        _fastpath.community_hash(0, b"\x01" * 5, b"\x01" * 4, 6, 1, 2, True)
