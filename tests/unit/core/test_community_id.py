"""Community ID v1 against the specification's published example values."""

from __future__ import annotations

import pytest

from dronewatch.core.community_id import community_id
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
