"""`dronewatch report`: one self-contained HTML file built from the records `analyze` writes."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from scapy.compat import raw
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from dronewatch.cli.app import main
from dronewatch.output.report_html import esc, json_block
from tests.pcaps import PCAPS
from tests.unit.capture.captures import pcap_bytes

SCENARIOS = PCAPS / "scenarios"
HOSTILE = '<img src=x onerror="alert(1)">evil\u202e.example'


def report_data(html: str) -> dict[str, Any]:
    """The JSON block a report embeds for its chart (and its verdicts)."""
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert m is not None
    data: dict[str, Any] = json.loads(m.group(1))
    return data


def inline_scripts(html: str) -> list[str]:
    return re.findall(r"<script>(.*?)</script>", html, re.S)


def test_verdicts_are_the_records_analyze_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The report of a capture carries exactly the verdict records `analyze --out` writes with
    the same options, shows each device's verdict, and exits as analyze does (1: violation)."""
    capture = str(SCENARIOS / "dji_fly_ldm_off.pcap")
    out = tmp_path / "records"
    assert main(["analyze", "--quiet", "--no-progress", "--ldm", "on", "--out", str(out), capture])
    written = [json.loads(line) for line in (out / "verdicts.jsonl").read_text().splitlines()]
    report = tmp_path / "report.html"
    code = main(["report", "--no-progress", "--ldm", "on", "-o", str(report), capture])
    assert code == 1
    html = report.read_text(encoding="utf-8")
    embedded = [
        {k: v for k, v in d.items() if k != "capture"} for d in report_data(html)["verdicts"]
    ]
    assert embedded == written and len(written) == 2
    for v in written:
        assert f'data-device="{v["device_ip"]}"' in html
        assert esc(v["msg"]) in html
    assert 'data-verdict="violation"' in html and 'data-verdict="clean"' in html
    assert "www.skypixel.com" in html and "Report written to" in capsys.readouterr().out


def test_report_is_self_contained(tmp_path: Path) -> None:
    """No external reference: no src/href to another place, and a CSP that allows only the
    file's own inline scripts and styles, each by its hash."""
    report = tmp_path / "r.html"
    main(
        ["report", "--no-progress", "-o", str(report), str(SCENARIOS / "dji_fly_ldm_on_clean.pcap")]
    )
    html = report.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert '<link rel="stylesheet"' not in html and "@import" not in html
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html)
    assert csp is not None and "default-src &#x27;none&#x27;" in csp.group(1)
    scripts = inline_scripts(html)
    assert len(scripts) == 3 and "uPlot" in scripts[0]
    for text in scripts:
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"sha256-{digest}" in csp.group(1)
    assert "connect-src" not in csp.group(1)  # falls back to default-src 'none'


def hostile_capture(path: Path) -> None:
    """A phone that looks up a hostile name and sends an HTTP request with a hostile Host."""
    mac = "02:00:00:00:00:02"
    phone, server = "10.0.0.2", "8.8.8.8"
    eth = Ether(src=mac, dst="02:00:00:00:00:01")
    back = Ether(src="02:00:00:00:00:01", dst=mac)
    dns = (
        eth
        / IP(src=phone, dst="10.0.0.1")
        / UDP(sport=5353, dport=53)
        / DNS(id=7, rd=1, qd=DNSQR(qname="x<script>alert(2)</script>.example"))
    )
    syn = eth / IP(src=phone, dst=server) / TCP(sport=40000, dport=80, flags="S", seq=1)
    synack = back / IP(src=server, dst=phone) / TCP(sport=80, dport=40000, flags="SA", seq=9, ack=2)
    request = (
        f"POST /upload HTTP/1.1\r\nHost: {HOSTILE}\r\nContent-Length: 40\r\n\r\n" + "x" * 40
    ).encode()
    data = (
        eth
        / IP(src=phone, dst=server)
        / TCP(sport=40000, dport=80, flags="PA", seq=2, ack=10)
        / request
    )
    frames = [(1000.0, raw(dns)), (1000.1, raw(syn)), (1000.2, raw(synack)), (1000.3, raw(data))]
    path.write_bytes(pcap_bytes(frames))


def test_hostile_names_stay_text(tmp_path: Path) -> None:
    """An HTTP Host and a DNS name carrying markup show escaped: no element comes from them,
    the JSON block has no `<`, and no right-to-left override reaches the page."""
    capture = tmp_path / "hostile.pcap"
    hostile_capture(capture)
    policy = tmp_path / "policy.yaml"
    policy.write_text("devices:\n  - name: phone\n    ip: 10.0.0.2\n    ldm: on\n")
    report = tmp_path / "r.html"
    assert (
        main(["report", "--no-progress", "--policy", str(policy), "-o", str(report), str(capture)])
        == 1
    )
    html = report.read_text(encoding="utf-8")
    assert "<img" not in html and "<script>alert" not in html and "\u202e" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;evil" in html
    assert "x&lt;script&gt;alert(2)&lt;/script&gt;.example" in html
    block = re.search(r'id="report-data">(.*?)</script>', html, re.S)
    assert block is not None and "<" not in block.group(1)
    assert 'data-verdict="violation"' in html


def test_esc_spells_out_controls_and_escapes_markup() -> None:
    """Markup, quotes, a right-to-left override and an escape character come out as text."""
    assert esc('<a href="x">\u202e\x1b') == "&lt;a href=&quot;x&quot;&gt;\\u202e\\x1b"


def test_json_block_cannot_close_its_element() -> None:
    """`</script>` inside a string of the embedded JSON is escaped and still decodes."""
    text = json_block({"name": "</script><script>alert(1)</script>&"})
    assert "</script" not in text and "&" not in text
    assert json.loads(text) == {"name": "</script><script>alert(1)</script>&"}


def test_diff_report_shows_what_only_one_capture_sent(tmp_path: Path) -> None:
    """--diff A B judges A with LDM off and B with LDM on, and lists the destinations found in
    only one of them; the violation in B makes the exit code 1."""
    report = tmp_path / "diff.html"
    code = main(
        [
            "report",
            "--no-progress",
            "--diff",
            str(SCENARIOS / "dji_fly_ldm_off.pcap"),
            str(SCENARIOS / "dji_fly_ldm_on_violation.pcap"),
            "-o",
            str(report),
        ]
    )
    assert code == 1
    html = report.read_text(encoding="utf-8")
    verdicts = report_data(html)["verdicts"]
    by_capture = {(v["capture"], v["device_ip"]): v["verdict"] for v in verdicts}
    assert by_capture[(0, "10.77.0.2")] == "not_applicable"
    assert by_capture[(1, "10.77.0.2")] == "violation"
    assert "6 destinations only in A, 1 only in B, 0 in both." in html
    assert re.search(r'class="diff-only_b">.*?mydjiflight\.dji\.com', html, re.S)
    views = report_data(html)["timeline"]
    assert [v["label"] for v in views][:3] == [
        "All devices, all captures",
        "Capture 1: dji_fly_ldm_off.pcap",
        "Capture 2: dji_fly_ldm_on_violation.pcap",
    ]
    off_view = views[1]["data"]
    assert off_view["ldm_on"] == [] and views[2]["data"]["ldm_on"]


def test_provenance_names_packs_databases_and_checksums(tmp_path: Path) -> None:
    """The report names the rule packs and GeoIP databases used, with checksums, the capture's
    sha256, and the command that made it."""
    capture = SCENARIOS / "dji_fly_ldm_on_clean.pcap"
    report = tmp_path / "r.html"
    main(["report", "--no-progress", "--ldm", "on", "-o", str(report), str(capture)])
    html = report.read_text(encoding="utf-8")
    assert hashlib.sha256(capture.read_bytes()).hexdigest() in html
    assert "dji.yaml" in html and "DBIP-Country-Lite" in html
    assert f"dronewatch report {capture} -o {report} --ldm on" in html


def test_files_or_diff_not_both(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Capture files and --diff together, or neither, is a usage error (exit 2)."""
    capture = str(SCENARIOS / "dji_fly_ldm_on_clean.pcap")
    out = str(tmp_path / "r.html")
    assert main(["report", "-o", out]) == 2
    assert main(["report", "-o", out, capture, "--diff", capture, capture]) == 2
    assert "not both" in capsys.readouterr().err
    assert not Path(out).exists()


def test_missing_capture_is_reported_and_exit_2(tmp_path: Path) -> None:
    """An unreadable capture still gives a report (saying it was not read) and exit code 2."""
    report = tmp_path / "r.html"
    assert main(["report", "--no-progress", "-o", str(report), str(tmp_path / "nope.pcap")]) == 2
    assert "not read" in report.read_text(encoding="utf-8")


def test_report_names_the_device_or_says_how(tmp_path: Path) -> None:
    """No ground station: the report lists the local hosts considered and how to name one; with
    --device the named host gets its verdict card."""
    wiki = str(PCAPS / "third_party" / "zeek" / "wikipedia.pcap")
    out = tmp_path / "r.html"
    assert main(["report", wiki, "--ldm", "on", "-o", str(out)]) == 0
    html = out.read_text()
    assert "No ground station was recognised and no device was named" in html
    assert "<li>fe80::217:f2ff:fed7:cf65: no drone link" in html
    assert "--device IP|MAC|CIDR|NAME" in html
    assert main(["report", wiki, "--ldm", "on", "--device", "141.142.220.118", "-o", str(out)]) == 1
    html = out.read_text()
    assert "No ground station was recognised" not in html
    assert "141.142.220.118" in report_data(html)["verdicts"][0]["device_ip"]


def test_checksum_drops_are_a_caveat_of_each_verdict(tmp_path: Path) -> None:
    """With `--checksums verify`, a capture with datagrams whose checksum is wrong: the report
    lists the dropped packets among each device's coverage caveats and in the capture's
    coverage; with the default (`ignore`) no verdict does, and the capture counts none."""
    from tests.unit.judge.test_verdict import CLEAN_CAPTURE, _with_one_corrupt_datagram

    broken = tmp_path / "one_bad_checksum.pcap"
    _with_one_corrupt_datagram(CLEAN_CAPTURE, broken)
    checked, ignored = tmp_path / "checked.html", tmp_path / "ignored.html"
    args = ["report", "--no-progress", "--ldm", "on"]
    assert main([*args, "--checksums", "verify", "-o", str(checked), str(broken)]) == 0
    assert main([*args, "-o", str(ignored), str(broken)]) == 0
    html = checked.read_text(encoding="utf-8")
    caveat = "1 packets with a wrong checksum dropped unread (as their receivers dropped them)"
    verdicts = report_data(html)["verdicts"]
    assert verdicts and html.count(f"<li>{esc(caveat)}</li>") == len(verdicts)
    assert "wrong checksums 1" in html
    plain = ignored.read_text(encoding="utf-8")
    assert "dropped unread" not in plain and "wrong checksums 0" in plain
