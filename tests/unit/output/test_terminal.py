"""Wire strings cannot drive the terminal: escapes, controls and bidi overrides are spelt out."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from scapy.compat import raw
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from dronewatch.capture.files import FileSource
from dronewatch.cli.app import main
from dronewatch.output.progress import Progress
from dronewatch.output.terminal import SafeFormatter, SafeWriter, inline, printable
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


HOSTILE_NAME = "x\x1b[2J\n10.0.0.2 (phone): CLEAN\u202e"
"""A name with a clear screen and a line break before a fake verdict."""


def test_inline_escapes_the_newline_as_well() -> None:
    """`inline` spells out the newline too, so one value cannot start a line of its own."""
    assert inline(HOSTILE_NAME) == "x\\x1b[2J\\x0a10.0.0.2 (phone): CLEAN\\u202e"
    assert inline("línea 無人機") == "línea 無人機"


def test_safe_formatter_keeps_each_log_message_one_printable_line() -> None:
    """A log message quoting wire text is written escaped, on one line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter("dronewatch: %(levelname)s: %(message)s"))
    log = logging.getLogger("tests.terminal.safe")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("flow to %s failed", HOSTILE_NAME)
    finally:
        log.removeHandler(handler)
    assert stream.getvalue() == (
        "dronewatch: WARNING: flow to x\\x1b[2J\\x0a10.0.0.2 (phone): CLEAN\\u202e failed\n"
    )


def test_progress_line_names_the_source_printably(tmp_path: Path) -> None:
    """The progress line of a capture whose file name holds an escape and a line break shows
    the name escaped, on the one line it rewrites."""
    path = tmp_path / f"{HOSTILE_NAME}.pcap"
    path.write_bytes(pcap_bytes([]))
    stream = io.StringIO()
    Progress(stream, interval_s=0.0, tty=False)(FileSource(str(path)), 12)
    text = stream.getvalue()
    assert "\x1b" not in text and "\u202e" not in text and text.count("\n") == 1
    assert "\\x1b[2J\\x0a10.0.0.2 (phone): CLEAN\\u202e.pcap: " in text


def test_progress_lines_in_a_log_end_with_the_whole_read(tmp_path: Path) -> None:
    """Written to a log (not a terminal), the progress lines end with one for the finished
    read, even when the last share fell inside the interval between lines; on a terminal the
    line is cleared instead."""
    path = tmp_path / "c.pcap"
    path.write_bytes(pcap_bytes([]))
    source = FileSource(str(path))
    stream = io.StringIO()
    progress = Progress(stream, interval_s=3600.0, tty=False)
    progress(source, 10)  # the first share is shown
    progress(source, 20)  # inside the interval: not shown
    progress.done(30)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and " 10 packets" in lines[0] and " 30 packets" in lines[1]
    terminal = io.StringIO()
    progress = Progress(terminal, interval_s=3600.0, tty=True)
    progress(source, 10)
    progress.done(30)
    assert " 30 packets" not in terminal.getvalue()
    quiet = io.StringIO()
    Progress(quiet, interval_s=3600.0, tty=False).done(30)  # nothing shown: nothing to end
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("command", ["analyze", "diff", "report"])
def test_an_error_quoting_a_name_is_one_printable_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    """An error message naming a capture (here one that does not exist, with an escape and a
    line break in its name) is printed escaped on one line by analyze, diff and report."""
    missing = str(tmp_path / f"{HOSTILE_NAME}.pcap")
    argv = {
        "analyze": ["analyze", "--no-progress", missing],
        "diff": ["diff", missing, missing],
        "report": ["report", "-o", str(tmp_path / "r.html"), missing],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\u202e" not in err
    assert [ln for ln in err.splitlines() if "CLEAN" in ln] == [
        ln for ln in err.splitlines() if ln.startswith("dronewatch: ") and "\\x1b[2J\\x0a" in ln
    ]
    assert "\\x1b[2J\\x0a10.0.0.2 (phone): CLEAN" in err


def test_rules_commands_print_pack_text_printably(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rules list` and `rules lint` print a user pack's vendor and a failing test case's name
    escaped: an escape or a line break in a pack cannot drive the terminal or forge a line."""
    (tmp_path / "hostile.yaml").write_text(
        "pack: hostile\nversion: 1\ndescription: escapes\nrules:\n"
        "  - id: hostile.vendor_name\n"
        '    vendor: "Evil\\e[2J\\u202eCo\\nCLEAN"\n'
        "    app: App\n    category: analytics\n    confidence: 0.5\n    evidence: I\n"
        "    source: lab\n    description: x\n    match:\n      host: [evil.example]\n"
        "    tests:\n      match:\n"
        '        - {sni: "\\e[2Jnot-evil.example\\nOK"}\n'
        "      no_match:\n        - {sni: other.example}\n",
        encoding="utf-8",
    )
    assert main(["rules", "list", "--rules", str(tmp_path), "--vendor", "evil"]) == 0
    listed = capsys.readouterr().out
    assert "Evil\\x1b[2J\\u202eCo\\x0aCLEAN" in listed
    assert len(listed.splitlines()) == 3  # header, the rule, the count
    assert main(["rules", "lint", "--rules", str(tmp_path)]) == 1
    linted = capsys.readouterr().out
    assert "sni=\\x1b[2Jnot-evil.example\\x0aOK" in linted
    assert "\x1b" not in listed + linted and "\u202e" not in listed
    assert not [ln for ln in linted.splitlines() if ln.startswith("OK")]
