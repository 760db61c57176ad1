"""Wire strings cannot drive the terminal: escapes, controls and bidi overrides are spelt out."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from scapy.all import BOOTP, DHCP, IP, TCP, UDP, Ether, raw

from dronewatch.cli.app import main
from dronewatch.output.terminal import SafeWriter, printable
from tests.unit.capture.captures import pcap_bytes

FAKE = "\x1b[2J\x1b[H10.0.0.2 (phone): CLEAN\r\u202e"


def test_printable_escapes_controls_and_keeps_text() -> None:
    """ESC, CR, C1 CSI, NUL, tab and a right-to-left override are escaped; newlines, accents
    and CJK stay as they are."""
    assert printable(FAKE) == "\\x1b[2J\\x1b[H10.0.0.2 (phone): CLEAN\\x0d\\u202e"
    assert printable("a\x9bb\x00c\td") == "a\\x9bb\\x00c\\x09d"
    assert printable("línea\n無人機") == "línea\n無人機"
    out = io.StringIO()
    SafeWriter(out).write("x\x07y\n")
    assert out.getvalue() == "x\\x07y\n"


def test_hostile_dhcp_hostname_cannot_fake_a_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DHCP hostname carrying a clear-screen sequence and a fake CLEAN verdict is printed
    escaped in the analyze summary, and the real VIOLATION still shows."""
    mac = "02:00:00:00:00:02"
    dhcp = (
        Ether(src=mac, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=bytes.fromhex(mac.replace(":", "")), xid=7)
        / DHCP(options=[("message-type", "request"), ("hostname", FAKE.encode()), "end"])
    )
    leak = Ether(src=mac) / IP(src="10.0.0.2", dst="8.8.8.8") / TCP(sport=40000, dport=443)
    capture = tmp_path / "hostile.pcap"
    capture.write_bytes(pcap_bytes([(1000.0, raw(dhcp)), (1001.0, raw(leak / (b"x" * 40)))]))
    policy = tmp_path / "policy.yaml"
    policy.write_text("devices:\n  - name: phone\n    ip: 10.0.0.2\n    ldm: on\n")
    main(["analyze", "--no-progress", "--policy", str(policy), str(capture)])
    printed = capsys.readouterr().out
    assert "\x1b" not in printed and "\r" not in printed and "\u202e" not in printed
    assert "\\x1b[2J" in printed
    assert "VIOLATION" in printed
