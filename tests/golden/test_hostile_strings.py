"""Hostile text from the wire (pcaps/scenarios/hostile_strings.pcap) is kept exactly in the records
and reaches no terminal, web page, syslog line or CEF event as anything but text.

The capture (scripts/_record/hostile.py) carries terminal escapes, CR/LF, NUL, U+2028, bidi
overrides, HTML and the CEF separators in a DHCP hostname, three DNS names, two TLS SNIs and an
HTTP Host header, from a phone that is a ground station with LDM on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dronewatch.cli.app import main
from tests.pcaps import GOLDEN, PCAPS, capture
from tests.sinks import as_alert, check_every_sink

HOSTILE = PCAPS / "scenarios" / "hostile_strings.pcap"
RECORDS = GOLDEN / "scenarios" / "hostile_strings"
CLEAN = PCAPS / "scenarios" / "dji_fly_ldm_on_clean.pcap"

FAKE = "192.168.2.20 (Pixel-7): CLEAN: nothing left the device"
DHCP_HOSTNAME = (
    f"\x1b[2J\x1b[3J\x1b[H\x1b]0;dronewatch: CLEAN\x07{FAKE}\r\n\x00\x1b[32m{FAKE}\x1b[0m"
    "\u202e<script>alert('dhcp')</script>\u2028\x7f\x9b2J"
)
"""What the phone sent as its DHCP hostname (scripts/_record/hostile.py), decoded."""
DNS_QUERIES = (
    "a|b=c\\d\r\ncef:0|dronewatch|dronewatch|0|ldm.none|clean|0|src=1.cef.evil.example",
    "nul\x00byte.line\u2028sep.\u202etxt.exe.<script>alert(1)</script>.evil.example",
    "\x1b[2j" + "l" * 59 + "." + "o" * 63 + "." + "n" * 63 + "." + "g" * 40 + ".evil.example",
)
"""The three hostile query names as the DNS log holds them (labels joined, lower case)."""
SNIS = (
    "x.evil.example|CEF:0|dronewatch|dronewatch|0|ldm.none|CLEAN|0|src=192.168.2.20 "
    "dhost=ok\\=1 msg=clean\r\n<165>1 - - - - - CEF:0|forged\x1b[2J<script>alert('sni')</script>",
    "\\xe2\\x80\\xae\x00\\xe2\\x80\\xa8\x1b[H" + "L" * 230 + ".evil.example",
)
"""The two server_names as the TLS log holds them (ASCII, other bytes as \\x.. escapes)."""
HTTP_HOST = (
    "evil.example\r|CEF:0|x|y|1|z|w|10|a\\=b\x1b[2J\x00<script>alert('host')</script>"
    "\u202e\u2028" + "h" * 2000
)
USER_AGENT = "\x1b[2JDJI Fly/1.13.4\u2028\u202e<b>bold</b>"

TERMINAL_UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
    "\ufeff\ufff9-\ufffb]"
)
"""Characters a terminal acts on or that change how text reads: only the newline may be printed."""


def records(log: str, ldm_on: bool = False) -> list[dict[str, object]]:
    """The golden records of one log of the capture (read by `\\n` alone, as JSONL is)."""
    path = RECORDS / ("ldm_on" if ldm_on else "") / f"{log}.jsonl"
    text = capture(path).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.split("\n") if line]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_records_keep_the_hostile_text_exactly() -> None:
    """The DHCP, DNS, TLS and HTTP logs hold each hostile string exactly as decoded from the
    wire, and the alerts name the destinations by them."""
    hostnames = {r.get("hostname") for r in records("dhcp")} - {None}  # the server's have none
    assert hostnames == {DHCP_HOSTNAME}
    assert set(DNS_QUERIES) <= {r["query"] for r in records("dns")}
    assert set(SNIS) <= {r.get("server_name") for r in records("tls")}
    (http,) = records("http")
    assert (http["host"], http["user_agent"]) == (HTTP_HOST, USER_AGENT)
    assert http["uri"] == "/<script>alert('uri')</script>?q=a|b=c\\d"
    named = {a["dest_name"] for a in records("alerts", ldm_on=True)}
    assert set(DNS_QUERIES) | set(SNIS) <= named
    assert "evil.example\r|cef" in named  # the Host up to its port separator, lower case


def test_jsonl_files_escape_every_control_and_line_separator() -> None:
    """Every JSONL line of the capture is one line for any reader (`str.splitlines` too): C0,
    DEL, C1, U+2028 and U+2029 are JSON escapes, never raw, and the text reads back."""
    files = sorted(RECORDS.rglob("*.jsonl"))
    assert len(files) > 10
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]", text), path.name
        assert len(text.splitlines()) == text.count("\n")


def test_analyze_out_writes_the_same_safe_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`analyze --out` writes the alert exports (ECS, OCSF) one line each as well, with the
    hostile names intact inside."""
    code, _, _ = run(
        [
            "analyze",
            "--quiet",
            "--no-progress",
            "--ldm",
            "on",
            "--out",
            str(tmp_path),
            str(HOSTILE),
        ],
        capsys,
    )
    assert code == 1
    for name in ("alerts.ecs.jsonl", "alerts.ocsf.jsonl", "alerts.jsonl", "dhcp.jsonl"):
        text = (tmp_path / name).read_text(encoding="utf-8")
        assert len(text.splitlines()) == text.count("\n") > 0, name
    ecs = [json.loads(x) for x in (tmp_path / "alerts.ecs.jsonl").read_text().split("\n") if x]
    assert set(SNIS) <= {d["destination"].get("domain") for d in ecs}


def test_analyze_summary_prints_no_control_and_no_forged_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The analyze summary spells out every escape, control and bidi character, and no name
    starts a line of its own: the verdicts are exactly the two real ones, every alert row starts
    with its severity, and the real VIOLATION shows."""
    code, out, err = run(["analyze", "--no-progress", "--ldm", "on", str(HOSTILE)], capsys)
    assert code == 1
    for text in (out, err):
        assert not TERMINAL_UNSAFE.search(text), repr(TERMINAL_UNSAFE.search(text))
    lines = out.split("\n")
    assert not [ln for ln in lines if FAKE in ln.split(":", 1)[0]]
    verdicts = lines[lines.index("Verdicts:") + 1 : lines.index("", lines.index("Verdicts:"))]
    assert len(verdicts) == 2
    assert verdicts[0].startswith("  10.77.0.2: VIOLATION: ")
    assert verdicts[1].startswith("  192.168.2.20 (\\x1b[2J") and verdicts[1].endswith(")")
    start = next(i for i, ln in enumerate(lines) if ln.startswith("Alerts ("))
    rows = lines[start + 2 : lines.index("", start)]
    assert len(rows) == 8 and all(r.startswith(("  medium ", "  low ")) for r in rows), rows
    assert "\\x0d\\x0a\\x00\\x1b[32m" in out  # the hostname's line break, spelt out


def test_diff_prints_wire_names_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`dronewatch diff` lists the hostile destinations escaped, one table row each."""
    code, out, err = run(["diff", str(HOSTILE), str(CLEAN)], capsys)
    assert code == 0
    assert not TERMINAL_UNSAFE.search(out + err), repr(TERMINAL_UNSAFE.search(out + err))
    lines = out.rstrip("\n").split("\n")
    rows = lines[3:-1]
    assert len(rows) == 4 and all(r.startswith("only in A  ") for r in rows), rows
    assert "CEF:0|forged\\x1b[2J<script>" in out
    assert lines[-1] == "4 destinations only in A, 0 only in B, 0 in both"


def test_report_escapes_html_and_prints_safe_verdicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The HTML report shows the names as text (`<script>` escaped, no raw control or bidi
    character outside its JSON data), and `report` prints its verdict lines one line each."""
    page = tmp_path / "report.html"
    code, out, err = run(["report", "-o", str(page), "--ldm", "on", str(HOSTILE)], capsys)
    assert code == 1
    assert not TERMINAL_UNSAFE.search(out + err)
    lines = out.split("\n")
    assert len(lines) == 4 and lines[2].startswith("Report written to "), lines
    assert lines[0].startswith("10.77.0.2: VIOLATION: ") and lines[1].startswith("192.168.2.20: ")
    html = page.read_text(encoding="utf-8")
    assert "alert(" in html  # the names are shown ...
    assert not re.search(r"<script>\s*alert|<b>bold|<script>alert", html)  # ... as text
    assert html.count("<script") == html.count("</script>")
    assert "&lt;script&gt;alert(&#x27;dhcp&#x27;)&lt;/script&gt;" in html
    data = re.search(r'<script type="application/json" id="report-data">.*?</script>', html, re.S)
    assert data is not None
    outside = html[: data.start()] + html[data.end() :]
    assert not TERMINAL_UNSAFE.search(outside.replace("\t", "")), repr(
        TERMINAL_UNSAFE.search(outside.replace("\t", ""))
    )


def test_every_sink_escapes_the_hostile_alerts(tmp_path: Path) -> None:
    """Each LDM-on alert of the capture through the syslog/CEF, webhook and JSONL sinks: one
    line without a control character, and a CEF or syslog reader gets back exactly the alert's
    header fields, extension keys and values (no forged field, key or line)."""
    alerts = records("alerts", ldm_on=True)
    assert len(alerts) == 8
    for doc in alerts:
        check_every_sink(as_alert(doc), tmp_path)
