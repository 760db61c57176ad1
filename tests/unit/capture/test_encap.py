"""Encapsulation headers read byte by byte: where the inner packet starts, what carried it."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dronewatch.capture import encap
from dronewatch.capture.encap import ETH_TYPE_TEB, INNER_IP, Inner


def test_gre_header_length_follows_its_flags() -> None:
    """Checksum, key and sequence number each add 4 bytes; the key is the GRE key."""
    plain = bytes.fromhex("00000800")
    assert encap.gre(plain, 0, 4) == Inner("gre", None, 4, 0x0800)
    everything = bytes.fromhex("b0006558abcd00000000006300000001")
    assert encap.gre(everything, 0, 16) == Inner("gre", 99, 16, ETH_TYPE_TEB)
    assert encap.gre(everything, 0, 15) is None  # the header runs past the packet


@pytest.mark.parametrize(
    "header",
    [
        "00010800",  # version 1 (PPTP)
        "40000800" + "00000000",  # routing present (RFC 1701)
        "0000880b",  # PPP: not taken apart
    ],
)
def test_gre_the_decoder_leaves_alone(header: str) -> None:
    """A GRE header of another version, with routing, or of another protocol is not read."""
    data = bytes.fromhex(header) + bytes(20)
    assert encap.gre(data, 0, len(data)) is None


def test_erspan_types() -> None:
    """ERSPAN type I (no sequence number: no header), II (8 bytes) and III (12, or 20 with the
    platform subheader) give their session id and original VLAN; III may carry IP directly."""
    assert encap.gre(bytes.fromhex("000088be"), 0, 4) == Inner("erspan_i", None, 4, ETH_TYPE_TEB)
    ii = bytes.fromhex("100088be000000071007000500000000")
    assert encap.gre(ii, 0, len(ii)) == Inner("erspan_ii", 5, 16, ETH_TYPE_TEB, 7)
    iii = bytes.fromhex("100022eb00000007202000060000000000000001") + bytes(8)
    assert encap.gre(iii, 0, len(iii)) == Inner("erspan_iii", 6, 28, ETH_TYPE_TEB, 32)
    iii_ip = bytes.fromhex("100022eb00000007200000060000000000000800")
    assert encap.gre(iii_ip, 0, len(iii_ip)) == Inner("erspan_iii", 6, 20, INNER_IP, 0)
    wrong_version = bytes.fromhex("100088be000000072007000500000000")
    assert encap.gre(wrong_version, 0, len(wrong_version)) is None


def test_vxlan_and_geneve() -> None:
    """VXLAN needs its valid-VNI flag; Geneve's options are skipped by their length."""
    vxlan = bytes.fromhex("0800000000109200")
    assert encap.udp_tunnel(vxlan, 0, 8, 4789) == Inner("vxlan", 0x1092, 8, ETH_TYPE_TEB)
    assert encap.udp_tunnel(bytes.fromhex("0000000000109200"), 0, 8, 4789) is None
    geneve = bytes.fromhex("0200655800004d00") + bytes(8)
    assert encap.udp_tunnel(geneve, 0, 16, 6081) == Inner("geneve", 0x4D, 16, ETH_TYPE_TEB)
    assert encap.udp_tunnel(geneve, 0, 15, 6081) is None
    assert encap.udp_tunnel(bytes.fromhex("4200655800004d00"), 0, 8, 6081) is None
    assert encap.udp_tunnel(vxlan, 0, 8, 4790) is None


def test_mpls_stack_and_pppoe_session() -> None:
    """An MPLS stack ends at its bottom-of-stack entry; a PPPoE session header gives its session
    and PPP protocol, two bytes or compressed to one."""
    stack = struct.pack("!II", 16 << 12 | 0x40, 17 << 12 | 0x140) + b"\x45"
    assert encap.mpls(stack, 0) == (17, 8)
    with pytest.raises(struct.error):
        encap.mpls(stack[:6], 0)
    assert encap.pppoe(bytes.fromhex("1100123400280021") + b"\x45", 0) == (0x1234, 0x21, 8)
    assert encap.pppoe(bytes.fromhex("110012340028") + b"\x57\x60", 0) == (0x1234, 0x57, 7)
    assert encap.pppoe(bytes.fromhex("1109000000000021"), 0) is None  # PADI code


@given(st.binary(max_size=64), st.sampled_from([4789, 6081]))
def test_arbitrary_headers_are_read_or_refused(data: bytes, port: int) -> None:
    """Any bytes give an inner packet inside the given bounds, or None; never an exception."""
    for found in (encap.gre(data, 0, len(data)), encap.udp_tunnel(data, 0, len(data), port)):
        assert found is None or 0 < found.at <= len(data)
