"""Flow uids: "C" and the first 17 base32 characters of the SHA-1 of the key and first time."""

from __future__ import annotations

import base64
import hashlib
import random
import struct

import pytest

from dronewatch.core.engine import FlowKey, flow_uid, flow_uid_py
from dronewatch.fastpath import _fastpath


def uid_by_base64(key: FlowKey, first_ts: float) -> str:
    """The uid as `base64.b32encode` spells it."""
    proto, a, ap, b, bp = key
    digest = hashlib.sha1(
        struct.pack("!BHH", proto, ap, bp) + a + b + struct.pack("!d", first_ts)
    ).digest()
    return "C" + base64.b32encode(digest).decode("ascii")[:17]


def test_uid_is_the_base32_of_the_digest() -> None:
    """Random IPv4 and IPv6 keys and times give the uid base64's base32 gives them."""
    rng = random.Random(18)
    for _ in range(5000):
        size = rng.choice((4, 16))
        key = (rng.randrange(256), rng.randbytes(size), rng.randrange(65536), rng.randbytes(size))
        full: FlowKey = (*key, rng.randrange(65536))
        ts = rng.random() * 2e9
        assert flow_uid(full, ts) == uid_by_base64(full, ts)


def test_c_and_python_uids_agree() -> None:
    """The C extension's uid and the Python twin's are the same text, for IPv4 and IPv6 keys,
    odd times (negative, zero, subnormal, huge) included; a malformed key is refused in C."""
    rng = random.Random(7)
    times = [0.0, -1.5, 5e-324, 1.7e308, 1733500000.123456]
    for i in range(3000):
        size = rng.choice((4, 16))
        key: FlowKey = (
            rng.randrange(256),
            rng.randbytes(size),
            rng.randrange(65536),
            rng.randbytes(size),
            rng.randrange(65536),
        )
        ts = times[i] if i < len(times) else rng.random() * 2e9
        assert _fastpath.flow_uid(*key, ts) == flow_uid_py(*key, ts) == uid_by_base64(key, ts)
    with pytest.raises(ValueError, match="4 or 16 bytes"):
        _fastpath.flow_uid(6, b"\x01\x02\x03", 1, b"\x01\x02\x03\x04", 2, 0.0)
    with pytest.raises(ValueError, match="16-bit ports"):
        _fastpath.flow_uid(6, b"\x01\x02\x03\x04", 70000, b"\x01\x02\x03\x04", 2, 0.0)
