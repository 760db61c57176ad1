"""Flow uids: "C" and the first 17 base32 characters of the SHA-1 of the key and first time."""

from __future__ import annotations

import base64
import hashlib
import random
import struct

from dronewatch.core.engine import FlowKey, flow_uid


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
