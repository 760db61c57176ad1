"""JSONL records keep wire text exactly, one line per record for any reader."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers.dhcp import DhcpRecord
from dronewatch.output.jsonl import AlertExportWriter, json_line

HOSTILE = "\x1b[2J\r\n\x00\x7f\x85\x9b2J\u2028\u2029\u202e<script>|=\\"


def test_json_line_escapes_line_breaks_and_c1_controls() -> None:
    """NEL, the C1 CSI, DEL, U+2028 and U+2029 are escaped like C0 controls are; other text
    (accents, a bidi override) stays as it is and the line reads back to the same value."""
    line = json_line({"v": HOSTILE, "é": "無人機"})
    assert line == (
        '{"v":"\\u001b[2J\\r\\n\\u0000\\u007f\\u0085\\u009b2J\\u2028\\u2029\u202e<script>|=\\\\",'
        '"é":"無人機"}'
    )
    assert json.loads(line) == {"v": HOSTILE, "é": "無人機"}


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_is_one_line_that_reads_back(text: str) -> None:
    """Whatever the text, its JSON line splits into one line by `str.splitlines` and parses
    back to the same text."""
    line = json_line({"t": text})
    assert line.splitlines() == [line]
    assert json.loads(line) == {"t": text}


def test_writer_keeps_a_hostile_hostname_on_its_line(tmp_path: Path) -> None:
    """A DHCP record whose hostname holds every line separator is one line of dhcp.jsonl, and
    reading the file line by line gives the hostname back exactly."""
    writer = AlertExportWriter(tmp_path)
    for i in range(2):
        writer.write(
            DhcpRecord(
                ts=1.0 + i,
                uid=f"C{i}",
                orig_h="0.0.0.0",
                orig_p=68,
                resp_h="255.255.255.255",
                resp_p=67,
                msg_type="DISCOVER",
                trans_id=i,
                client_mac="02:00:00:00:00:01",
                hostname=HOSTILE,
            )
        )
    writer.close()
    lines = (tmp_path / "dhcp.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(ln)["hostname"] for ln in lines] == [HOSTILE, HOSTILE]
