"""A flow's facts (`Flow.meta`): shared and read-only until the first one is written."""

from __future__ import annotations

import pytest

from tests.factories import make_flow, make_packet


def test_flows_without_facts_share_one_read_only_meta() -> None:
    """Two flows with no fact hold the same empty meta, which refuses writes, so a write that
    skips the methods cannot reach every other flow."""
    a, b = make_flow(make_packet()), make_flow(make_packet(sport=50001))
    assert a.meta == {} and a.meta is b.meta
    with pytest.raises(TypeError, match="add_meta"):
        a.meta["sni"] = "drone.example"
    with pytest.raises(TypeError):
        a.meta.setdefault("sni", "drone.example")
    assert b.meta == {}


def test_writing_a_fact_gives_the_flow_its_own_meta() -> None:
    """`add_meta` keeps the first value, `set_meta` replaces it, `add_meta_item` keeps a
    bounded list: each on the flow's own dict, the other flows' left empty."""
    a, b, c = (make_flow(make_packet(sport=port)) for port in (1, 2, 3))
    a.add_meta("sni", "first.example")
    a.add_meta("sni", "second.example")
    b.set_meta("rtmp_url", "rtmp://a/b")
    b.set_meta("rtmp_url", "rtmp://a/c")
    for name in ("x", "y", "x", "z"):
        c.add_meta_item("dns_query", name, limit=2)
    assert a.meta == {"sni": "first.example"}
    assert b.meta == {"rtmp_url": "rtmp://a/c"}
    assert c.meta == {"dns_query": ["x", "y"]}
    assert make_flow(make_packet()).meta == {}
