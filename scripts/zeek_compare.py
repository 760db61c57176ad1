#!/usr/bin/env python3
"""Compare dronewatch's records with the logs Zeek writes for Zeek's own test traces.

    .venv/bin/python scripts/zeek_compare.py --btest /tmp/zeek/testing/btest [--diffs 20]
    .venv/bin/python scripts/zeek_compare.py --set tests/golden/zeek_baselines [--json out.json]
    ZEEK_COMPARE_SRC=/tmp/before/src DRONEWATCH_NO_C=1 .venv/bin/python scripts/zeek_compare.py ...

`--btest DIR` reads a checkout of Zeek's testing/btest/: every baseline directory under
Baseline/ that holds one of the compared logs is matched with its test script, whose
`@TEST-EXEC: zeek ... -r $TRACES/...` line names the trace (tests that read several traces, or
filter them with `-f`, are left out). `--set DIR` reads a copied set: DIR/<name>/ holds the
baseline logs and a file `trace` naming the capture (relative to the checkout).

dronewatch runs over each trace in this process (the library, as `dronewatch analyze` runs),
and its records are paired with Zeek's by keys that do not depend on uids: the protocol and the
two endpoints (either way round), then, within one such group, the pairing that agrees best
(start time first when the baseline keeps it; most baselines mask times). Every compared field
of a paired record counts once; a Zeek record without a partner counts each of its fields as a
disagreement. Records only dronewatch wrote are counted apart (`extra`).

The logs: conn (dronewatch flows), dns (dronewatch's dns and, for mDNS, its per-message
mdns_messages records), http, ssl (dronewatch tls, and for the TLS of a QUIC connection its
quic record, without `established`), quic, dhcp (dronewatch's
per-message records folded into Zeek's per-transaction ones by the tool) and mqtt (Zeek's
mqtt_connect, mqtt_publish and mqtt_subscribe logs), and tunnel (one line per tunnel of
dronewatch's flows). A connection that came through a tunnel is compared by its inner endpoints,
with a `tunnel` field: Zeek's tunnel_parents looked up in its tunnel.log (type and outer
addresses) against the flow's tunnel; dronewatch's GRE and ERSPAN are Zeek's `Tunnel::GRE`, its
MPLS and PPPoE are link layers to Zeek (no tunnel), and a tunnel's outer UDP connection (VXLAN,
Geneve) is not a flow in dronewatch, so it is left out of conn. Field names and formats are mapped
(`TLSv12` and `TLSv1.2`, `unknown-32257` and `0x7e01`, QUIC's `unknown-10010000` and
`0x10010000`, `HTTP/1.1` and `1.1`, icmp6 as icmp,
DNS type `*` and `query-N` as `ANY` and `TYPEN`, an unset list as an empty one, HTTP status `0`
and `<empty>` as none, a request target percent-decoded as Zeek logs it, service `mdns` as
`dns`, Zeek's set of services as agreeing with a dronewatch service that is one of them);
values are not. Tests whose script feeds an analyzer bytes of its own or drops traffic
with a packet filter are left out, as capture filters are.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SRC = os.environ.get("ZEEK_COMPARE_SRC") or str(ROOT / "src")
"""Whose dronewatch runs: this checkout's, or the `src` directory ZEEK_COMPARE_SRC names (an
export of an earlier commit, say, to measure before and after a change on the same traces)."""
sys.path.insert(0, SRC)

from dronewatch.capture.files import FileSource  # noqa: E402
from dronewatch.core.hooks import Record  # noqa: E402
from dronewatch.core.pipeline import AnalysisConfig, run_source  # noqa: E402

LOGS = ("conn", "dns", "http", "ssl", "quic", "dhcp", "mqtt", "tunnel")
"""The Zeek logs compared."""
BASELINE_FILES = {
    "conn": ("conn.log",),
    "dns": ("dns.log",),
    "http": ("http.log",),
    "ssl": ("ssl.log",),
    "quic": ("quic.log",),
    "dhcp": ("dhcp.log",),
    "mqtt": ("mqtt_connect.log", "mqtt_publish.log", "mqtt_subscribe.log"),
    "tunnel": ("tunnel.log",),
}
ENCAPSULATIONS = {
    "ethertype-0x8903": "Cisco FabricPath",
    "ethertype-0x88e7": "PBB (802.1ah)",
    "ethertype-0x8926": "VN-Tag",
    "linktype-9": "PPP",
    "linktype-50": "PPP over serial",
    "linktype-51": "PPPoE",
    "linktype-239": "NFLOG",
}
"""Link-layer encapsulations dronewatch does not read yet (the live-capture issue's): a trace
that carries them is left out, named."""
TUNNEL_SERVICES = ("gtpv1", "teredo", "ayiya", "vxlan", "geneve", "gre", "ip-in-ip")
"""Services of a tunnel's outer connection: a trace with one carries tunnels."""
SKIP = object()
"""A field value that is not compared (the baseline does not have the field)."""

Rec = dict[str, Any]


# ---- reading Zeek logs --------------------------------------------------------------------------


def read_zeek_log(path: Path) -> list[Rec]:
    """The records of a Zeek log (ASCII with a `#fields` header, or JSON lines), by field name;
    unset fields are None, set and vector fields are lists."""
    text = path.read_text(errors="replace")
    lines = [line for line in text.splitlines() if line and not line.startswith("###")]
    if lines and lines[0].startswith("{"):
        out_json = []
        for line in lines:
            try:
                out_json.append(json.loads(line))
            except ValueError:
                continue  # a line the test cut or masked
        return out_json
    sep, set_sep, unset, empty = "\t", ",", "-", "(empty)"
    fields: list[str] = []
    types: list[str] = []
    out: list[Rec] = []
    if lines and not lines[0].startswith("#"):  # btest-diff-cut: a header line of names
        fields, lines = lines[0].split(sep), lines[1:]
    for line in lines:
        if line.startswith("#"):
            key, _, value = line[1:].partition(" " if line.startswith("#separator") else "\t")
            if key == "separator":
                sep = value.encode().decode("unicode_escape")
            elif key == "set_separator":
                set_sep = value
            elif key == "unset_field":
                unset = value
            elif key == "empty_field":
                empty = value
            elif key == "fields":
                fields = value.split(sep)
            elif key == "types":
                types = value.split(sep)
            continue
        values = line.split(sep)
        rec: Rec = {}
        for i, name in enumerate(fields):
            raw = values[i] if i < len(values) else unset
            kind = types[i] if i < len(types) else "string"
            if raw == unset:
                rec[name] = None
            elif kind.startswith(("set[", "vector[")):
                rec[name] = [] if raw == empty else raw.split(set_sep)
            elif raw == empty:
                rec[name] = ""
            else:
                rec[name] = raw
        out.append(rec)
    return out


# ---- the trace sets ---------------------------------------------------------------------------


@dataclass
class Case:
    """One trace and the Zeek baseline logs written for it."""

    name: str
    trace: Path
    baselines: dict[str, list[Path]] = field(default_factory=dict)
    """Baseline files by compared log (`mqtt` has three)."""
    checksums: str = "verify"
    """How dronewatch takes wrong checksums for this trace (`--checksums`): as the Zeek run did,
    `verify` (Zeek's default) or `ignore` (its `-C`, or `ignore_checksums` set)."""


_EXEC_TRACE = re.compile(r"\$\{?TRACES\}?/([^\s;|&)]+)")
_ALTERS_INPUT = re.compile(r"\bprotocol_data_in\b|\bcreate_packetfilter\b")
"""A test whose script changes what Zeek reads: it hands an analyzer bytes of its own
(`zeek::protocol_data_in`: the records are the test's, not the trace's), or installs a packet
filter that drops traffic (NetControl's packetfilter: as a capture filter, `-f`, does)."""
_MARKS_CONNS = re.compile(r"\bReporter::limit_reached_weird\b")
"""A test whose script marks connections itself: an analyzer limit it reports by hand puts
Zeek's `X` into the conn history, whatever the trace holds."""
_REDEF = re.compile(r"^\s*redef\s+([\w:]+)", re.MULTILINE)
"""A `redef` in a test's script, and what it redefines."""
_LOGGING_ONLY = re.compile(
    r"^(record|enum)$|^Log(Ascii)?::|^Weird::|^X509::|::logged_commands$"
    r"|::default_capture_password$|^SSL::log_include_|^HTTP::log_server_header_names$"
    r"|^SSL::root_certs$|^SSL::ssl_cache_intermediate_ca$"
)
"""Settings a test may redefine and leave Zeek's analysis and the compared fields as they are:
log formats and field names, fields added to a log (`redef record ... &log`), names declared
(`redef enum`), what logs that are not compared hold (FTP commands, passwords, certificate
subjects, server header names, x509.log's caching, weirds) and certificate validation (ssl.log's
validation status, not compared). Any other setting (a limit, a threshold, a timeout, a set of
ports, keys to decrypt with, DPD's tracking of removed services in conn.log's `service`) makes
the run Zeek configured away from its defaults, as a redefinition on the command line does."""


def sets_analysis(script: str) -> bool:
    """Whether a test's script redefines a setting of Zeek's analysis (`_LOGGING_ONLY`)."""
    return any(not _LOGGING_ONLY.search(name) for name in _REDEF.findall(script))


_RUNS_ZEEK = re.compile(r"(?<![\w./-])zeek(?![\w-])")
"""A test line that runs zeek itself (not zeek-cut)."""
_IGNORES_CHECKSUMS = re.compile(r"(?<!\S)-[A-Za-z]*C[A-Za-z]*(?!\S)|ignore_checksums\s*=\s*T")
"""A Zeek run that checks no checksums: `-C` (alone or among other one-letter flags) on its
command line, or `ignore_checksums` set in its script."""


_ZEEK_ARGS = re.compile(r"(?<![\w./-])zeek(?![\w-])([^|;&>]*)")
"""A run of zeek on a test line and its arguments (up to a pipe, a redirection or the next
command)."""
_ASSIGNS = re.compile(r"(?<!\S)[A-Za-z_][\w:]*=(?!=)")
"""A `name=value` argument: Zeek reads it as `redef name = value`."""


def redefines(exec_line: str) -> bool:
    """Whether a Zeek run changes a setting from its command line: `-e` code, a `redef`, or a
    `name=value` argument (Zeek's short form of `redef name = value`, such as
    `dns_max_queries=3`). An assignment before `zeek` sets the environment, not Zeek."""
    if re.search(r"\s-e\s", exec_line) or "redef" in exec_line:
        return True
    return any(_ASSIGNS.search(m.group(1)) for m in _ZEEK_ARGS.finditer(exec_line))


def zeek_checksums(exec_line: str, script: str) -> str:
    """dronewatch's `--checksums` for a trace as one Zeek test ran it."""
    return "ignore" if _IGNORES_CHECKSUMS.search(exec_line + "\n" + script) else "verify"


def btest_cases(btest: Path) -> tuple[list[Case], Counter[str]]:
    """The single-trace tests of a Zeek btest checkout with a compared log, one case per trace
    (the first test of each trace, by baseline name, gives each log); and what was left out."""
    left_out: Counter[str] = Counter()
    by_trace: dict[str, Case] = {}
    weight: dict[tuple[str, str], int] = {}
    """Of each (trace, log), the lowest test weight seen (see below)."""
    for base in sorted((btest / "Baseline").iterdir()):
        logs = {
            log: [base / f for f in files if (base / f).is_file() and _usable(log, base / f)]
            for log, files in BASELINE_FILES.items()
        }
        logs = {log: files for log, files in logs.items() if files}
        if not logs:
            continue
        script = _test_script(btest, base.name)
        if script is None:
            left_out["no test script"] += 1
            continue
        execs = [
            line
            for line in script.read_text(errors="replace").splitlines()
            if "@TEST-EXEC" in line and _RUNS_ZEEK.search(line)
        ]
        traces = [t for line in execs for t in _EXEC_TRACE.findall(line)]
        if len(set(traces)) != 1 or len(execs) != 1:
            left_out["not one zeek run over one trace"] += 1
            continue
        if re.search(r"\s-f\s", execs[0]) or "restricted_filter" in execs[0]:
            left_out["capture filter"] += 1
            continue
        if redefines(execs[0]):
            left_out["redefines on the command line"] += 1
            continue
        if sets_analysis(script.read_text(errors="replace")):
            left_out["redefines an analysis setting in its script"] += 1
            continue
        if _ALTERS_INPUT.search(script.read_text(errors="replace")):
            left_out["the test feeds or drops packets itself"] += 1
            continue
        if _MARKS_CONNS.search(script.read_text(errors="replace")):
            left_out["the test marks connections itself"] += 1
            continue
        trace = btest / "Traces" / traces[0].strip("'\"")
        if not trace.is_file():
            left_out["trace not in the checkout"] += 1
            continue
        checks = zeek_checksums(execs[0], script.read_text(errors="replace"))
        case = by_trace.setdefault(traces[0], Case(traces[0], trace, checksums=checks))
        # Of several tests of one trace, the one closest to Zeek's defaults gives each log: a
        # run with all of Zeek's base scripts before a bare one (-b: fewer analyzers, so fewer
        # likely server ports and services), then the one whose script does least.
        size = sum(
            1
            for line in script.read_text(errors="replace").splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ) + (1_000_000 if re.search(r"\s-[A-Za-z]*b", execs[0]) else 0)
        for log, files in logs.items():
            if size < weight.get((traces[0], log), 1 << 30):
                weight[(traces[0], log)] = size
                case.baselines[log] = files
    return list(by_trace.values()), left_out


def _usable(log: str, path: Path) -> bool:
    """A baseline log that names the endpoints of its records (a cut one may not)."""
    records = read_zeek_log(path)
    if not records:
        return True
    if log == "dhcp":
        return "mac" in records[0]
    ends = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p")
    return all(k in records[0] for k in ends) or "uid" in records[0]


def _test_script(btest: Path, baseline: str) -> Path | None:
    parts = baseline.split(".")
    for i in range(len(parts), 0, -1):
        stem = btest.joinpath(*parts[:i])
        rest = ".".join(parts[i:])
        for ext in (".zeek", ".test", ".spicy", ".sh", ""):
            path = Path(f"{stem}/{rest}{ext}" if rest else f"{stem}{ext}")
            if path.is_file():
                return path
    return None


def set_cases(directory: Path) -> list[Case]:
    """A copied set: DIR/<name>/trace names the capture, DIR/<name>/checksums how the Zeek run
    took checksums (`Case.checksums`), the rest are baseline logs."""
    cases = []
    for sub in sorted(p for p in directory.iterdir() if (p / "trace").is_file()):
        trace = ROOT / (sub / "trace").read_text().strip()
        case = Case(sub.name, trace, checksums=(sub / "checksums").read_text().strip())
        for log, files in BASELINE_FILES.items():
            found = [sub / f for f in files if (sub / f).is_file()]
            if found:
                case.baselines[log] = found
        cases.append(case)
    return cases


# ---- running dronewatch -------------------------------------------------------------------------


def encapsulations(records: dict[str, list[Rec]]) -> list[str]:
    """The encapsulations of `ENCAPSULATIONS` dronewatch met (not read) in a trace."""
    found = set()
    for cap in records.get("capture", []):
        for key in (*cap.get("non_ip", {}), *cap.get("linktypes", {})):
            if key in ENCAPSULATIONS:
                found.add(ENCAPSULATIONS[key])
    return sorted(found)


def run_dronewatch(trace: Path, checksums: str = "ignore") -> dict[str, list[Rec]]:
    """dronewatch's records of one trace, by log, as `dronewatch analyze --checksums` writes
    them."""
    records: dict[str, list[Rec]] = defaultdict(list)

    def emit(record: Record) -> None:
        records[record.log].append(record.to_dict())

    run_source(FileSource(str(trace)), emit, AnalysisConfig(checksums=checksums))
    return records


# ---- normalising ------------------------------------------------------------------------------


def _int(v: Any) -> Any:
    return None if v is None else int(v)


def _float(v: Any) -> Any:
    return None if v is None else round(float(v), 6)


def _bool(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    return v == "T"


_ZEEK_UNKNOWN = re.compile(r"unknown-(\d+)")


def _tls_version(v: Any) -> Any:
    """`TLSv12` (Zeek) and `TLSv1.2` (dronewatch) as one spelling; a version neither names is
    `unknown-32257` in Zeek (decimal) and `0x7e01` in dronewatch (hex)."""
    if v is None:
        return None
    m = _ZEEK_UNKNOWN.fullmatch(str(v))
    return f"0x{int(m[1]):04x}" if m else str(v).replace(".", "")


def _http_version(v: Any) -> Any:
    return None if v is None else str(v).removeprefix("HTTP/")


def _zeek_status_code(v: Any) -> Any:
    """Zeek logs status 0 for a response without a status line (an HTTP/0.9 one); dronewatch
    leaves the status out."""
    return None if v is None or int(v) == 0 else int(v)


def _zeek_status_msg(v: Any) -> Any:
    """Zeek's `<empty>` is its text for a response without a reason phrase (none in
    dronewatch)."""
    return None if v == "<empty>" else v


def _hex(c: int) -> bool:
    return 48 <= c <= 57 or 65 <= c <= 70 or 97 <= c <= 102


def zeek_unescaped_uri(v: Any) -> Any:
    """dronewatch's request target (logged as sent) as Zeek logs it: percent-decoded as Zeek's
    `unescape_URI` decodes (`%XX`, `%uXXXX`, a doubled `%` read as one, a `%` before anything
    else kept), the bytes then written as Zeek's log writer writes them (a byte that is not
    UTF-8, and each byte of a character that is not printable, as `\\xNN`). dronewatch writes
    a raw byte of the request that is not UTF-8 as `\\xNN` too."""
    if v is None:
        return None
    raw = str(v).encode("utf-8", "surrogateescape")
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c != 0x25:  # `%`
            out.append(c)
            i += 1
            continue
        i += 1
        if i >= n - 1:  # `%` at the end, or `%` and one byte
            out += raw[i - 1 :]
            break
        if raw[i] == 0x25:  # `%%`: the first one is dropped
            continue
        if _hex(raw[i]) and _hex(raw[i + 1]):
            out.append(int(raw[i : i + 2], 16))
            i += 2
        elif n - i >= 5 and raw[i] == 0x75 and all(_hex(b) for b in raw[i + 1 : i + 5]):
            if raw[i + 1 : i + 3] != b"00":
                out.append(int(raw[i + 1 : i + 3], 16))
            out.append(int(raw[i + 3 : i + 5], 16))
            i += 5
        else:  # `%` before anything else: kept, and the byte after it taken as it is
            out += raw[i - 1 : i + 1]
            i += 1
    text = out.decode("utf-8", "backslashreplace")
    return "".join(
        ch if ch.isprintable() else "".join(f"\\x{b:02x}" for b in ch.encode()) for ch in text
    )


def _lower(v: Any) -> Any:
    return None if v is None else str(v).lower()


def _proto(v: Any) -> Any:
    return "icmp" if v == "icmp6" else v


def _conn_proto(v: Any) -> Any:
    v = _proto(v)
    return v if v in ("tcp", "udp", "icmp") else "unknown_transport"


def _quic_version(v: Any) -> Any:
    """dronewatch's `2` is Zeek's `quicv2` (RFC 9369); `1` is `1` in both."""
    return "quicv2" if v == "2" else v


_ZEEK_UNKNOWN_HEX = re.compile(r"unknown-([0-9a-f]+)")


def _zeek_quic_version(v: Any) -> Any:
    """A version Zeek has no name for, `unknown-10010000` (hex), is dronewatch's `0x10010000`."""
    m = _ZEEK_UNKNOWN_HEX.fullmatch(str(v)) if v is not None else None
    return f"0x{int(m[1], 16):08x}" if m else v


def _names(v: Any) -> Any:
    # Zeek leaves `answers` unset when a response has none; dronewatch writes an empty list.
    return [str(x).lower().rstrip(".") for x in v] if v else None


_ZEEK_QUERY_N = re.compile(r"query-(\d+)")


def _qtype_name(v: Any) -> Any:
    """Zeek's `*` is dronewatch's `ANY` (type 255); Zeek's `query-N` (a type it has no name for)
    is dronewatch's `TYPEN` (RFC 3597)."""
    if v == "*":
        return "ANY"
    m = _ZEEK_QUERY_N.fullmatch(str(v)) if v is not None else None
    return f"TYPE{m[1]}" if m else v


ZEEK_SERVICES = {"ssl": "tls", "dns": "dns", "http": "http", "quic": "quic", "dhcp": "dhcp"}
"""Zeek service names dronewatch also gives a flow (others are not compared)."""


def _dw_service(v: Any) -> Any:
    """dronewatch's `mdns` is Zeek's `dns`: Zeek's DNS analyzer reads mDNS and names it so."""
    return "dns" if v == "mdns" else v


class OneOf(frozenset):
    """A Zeek field that is a set where dronewatch names one value (conn's `service`: every
    analyzer that confirmed the protocol, logged in alphabetical order, not in the order found):
    dronewatch's value agrees when it is one of them."""

    def __repr__(self) -> str:
        return "{" + ",".join(sorted(self)) + "}"


def _zeek_service(v: Any) -> Any:
    if v is None:
        return SKIP
    names = str(v).split(",")
    if "quic" in names:
        return "quic"  # Zeek's QUIC connections also confirm ssl, for the TLS inside them
    mapped = OneOf(ZEEK_SERVICES[n] for n in names if n in ZEEK_SERVICES)
    return mapped if mapped else SKIP


Getter = Callable[[Rec], Any]


@dataclass(frozen=True)
class Field:
    """One compared field: its name (Zeek's), how to read it on each side."""

    name: str
    zeek: Getter
    dw: Getter
    close: float = 0.0
    """Numbers within this are equal (times printed to microseconds)."""


def zf(name: str, norm: Callable[[Any], Any] = lambda v: v) -> Getter:
    """Read Zeek field `name` (SKIP when the baseline lacks it)."""

    def get(rec: Rec) -> Any:
        return norm(rec[name]) if name in rec else SKIP

    return get


def df(name: str, norm: Callable[[Any], Any] = lambda v: v) -> Getter:
    """Read dronewatch field `name` (None when absent)."""
    return lambda rec: norm(rec.get(name))


def _has_endpoints(rec: Rec) -> bool:
    return all(k in rec for k in ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p"))


def _originator_z(rec: Rec) -> Any:
    return _endpoints_z(rec)[:2] if _has_endpoints(rec) else SKIP


def _conn_originator_d(rec: Rec) -> tuple[str, ...]:
    """The originator's address and port, the port 0 for a transport Zeek reads no ports of."""
    host, port = _endpoints_d(rec)[:2]
    return (host, "0" if _conn_proto(rec.get("proto")) == "unknown_transport" else port)


def _endpoints_z(rec: Rec) -> tuple[str, ...]:
    return (
        str(rec.get("id.orig_h")),
        str(rec.get("id.orig_p")),
        str(rec.get("id.resp_h")),
        str(rec.get("id.resp_p")),
    )


def _endpoints_d(rec: Rec) -> tuple[str, ...]:
    return (str(rec["orig_h"]), str(rec["orig_p"]), str(rec["resp_h"]), str(rec["resp_p"]))


def _unordered(ends: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    a, b = (ends[0], ends[1]), (ends[2], ends[3])
    return (a, b) if a <= b else (b, a)


def _conn_duration_d(rec: Rec) -> Any:
    # Zeek leaves duration and byte counts unset for a connection of zero duration.
    return round(rec["duration_s"], 6) if rec.get("duration_s") else None


def _when_lasting(name: str) -> Getter:
    return lambda rec: rec.get(name) if rec.get("duration_s") else None


CONN_FIELDS = (
    Field("proto", zf("proto"), df("proto", _conn_proto)),
    Field("originator", _originator_z, _conn_originator_d),
    Field("service", zf("service", _zeek_service), df("service", _dw_service)),
    Field("duration", zf("duration", _float), _conn_duration_d, close=2e-6),
    Field("orig_bytes", zf("orig_bytes", _int), _when_lasting("orig_payload_bytes")),
    Field("resp_bytes", zf("resp_bytes", _int), _when_lasting("resp_payload_bytes")),
    Field("conn_state", zf("conn_state"), df("conn_state")),
    Field("history", zf("history"), df("history")),
    # dronewatch writes none for a flow that is not TCP; Zeek 0.
    Field("missed_bytes", zf("missed_bytes", _int), lambda r: r.get("missed_bytes") or 0),
    Field("orig_pkts", zf("orig_pkts", _int), df("orig_pkts")),
    Field("orig_ip_bytes", zf("orig_ip_bytes", _int), df("orig_bytes")),
    Field("resp_pkts", zf("resp_pkts", _int), df("resp_pkts")),
    Field("resp_ip_bytes", zf("resp_ip_bytes", _int), df("resp_bytes")),
    Field("community_id", zf("community_id"), df("community_id")),
    Field("tunnel", zf("_tunnel"), lambda r: _dw_tunnel(r)),
)

ZEEK_TUNNELS = {
    "erspan_i": "Tunnel::GRE",
    "erspan_ii": "Tunnel::GRE",
    "erspan_iii": "Tunnel::GRE",
    "gre": "Tunnel::GRE",
    "vxlan": "Tunnel::VXLAN",
    "geneve": "Tunnel::GENEVE",
}
"""dronewatch's tunnel kinds as Zeek's tunnel.log types (Zeek's GRE analyzer reads ERSPAN);
MPLS and PPPoE are link layers to Zeek, not tunnels (no tunnel.log line, no tunnel_parents)."""


def _dw_tunnel(rec: Rec) -> Any:
    """A flow's tunnel as Zeek names a connection's parent: its type and its two outer
    addresses, either way round (one tunnel per address pair, see `zeek_tunnels`)."""
    kind = ZEEK_TUNNELS.get(str(rec.get("tunnel")))
    if kind is None:
        return None
    ends = sorted((str(rec.get("tunnel_src")), str(rec.get("tunnel_dst"))))
    return (kind, *ends)


def zeek_tunnels(files: list[Path]) -> dict[str, tuple[str, ...]]:
    """Zeek's tunnels by uid (tunnel.log's DISCOVER lines) as `_dw_tunnel` spells them: type and
    outer addresses. dronewatch keeps no outer UDP ports, so Zeek's two tunnels of one VXLAN or
    Geneve pair of addresses (one per direction, each with its own source port) are one."""
    out = {}
    for f in files:
        for r in read_zeek_log(f):
            if r.get("action") == "Tunnel::DISCOVER":
                ends = sorted((str(r.get("id.orig_h")), str(r.get("id.resp_h"))))
                out[str(r.get("uid"))] = (str(r.get("tunnel_type")), *ends)
    return out


def _zeek_conn(files: list[Path]) -> list[Rec]:
    """Zeek's conn.log with each connection's tunnel (`_tunnel`: its tunnel_parents looked up in
    the tunnel.log beside it, or, for a test that kept no tunnel.log, in the outer VXLAN and
    Geneve connections of conn.log itself; None when it came directly; absent when the log has
    no tunnel_parents or names a parent neither shows). A tunnel's own outer connection (a
    VXLAN or Geneve UDP one: its uid in tunnel.log, or its service a tunnel's) is left out:
    dronewatch judges the inner packets and names the tunnel on their flows instead (compared as
    `tunnel` here and in the tunnel log)."""
    tunnel_log = files[0].parent / "tunnel.log"
    tunnels = zeek_tunnels([tunnel_log]) if tunnel_log.is_file() else {}
    records = [r for f in files for r in read_zeek_log(f)]
    outer: set[str] = set(tunnels)
    for r in records:
        services = str(r.get("service") or "").split(",")
        kind = next((OUTER_SERVICES[x] for x in services if x in OUTER_SERVICES), None)
        if any(x in TUNNEL_SERVICES for x in services):
            outer.add(str(r.get("uid")))
        if kind is not None and str(r.get("uid")) not in tunnels:
            ends = sorted((str(r.get("id.orig_h")), str(r.get("id.resp_h"))))
            tunnels[str(r.get("uid"))] = (kind, *ends)
    out = []
    for r in records:
        if str(r.get("uid")) in outer:
            continue
        if "tunnel_parents" in r:
            uids = r["tunnel_parents"] or []
            if any(u not in tunnels for u in uids):
                out.append(r)
                continue
            parents = {tunnels[u] for u in uids}
            r["_tunnel"] = min(parents) if len(parents) == 1 else (sorted(parents) or None)
        out.append(r)
    return out


OUTER_SERVICES = {"vxlan": "Tunnel::VXLAN", "geneve": "Tunnel::GENEVE"}
"""conn.log services of a tunnel's outer UDP connection, as tunnel.log types."""


def _dw_tunnels(flows: list[Rec]) -> list[Rec]:
    """dronewatch's tunnels, one per type and address pair of its flows, as tunnel.log lines."""
    seen: dict[tuple[str, ...], Rec] = {}
    for r in flows:
        t = _dw_tunnel(r)
        if t is not None and t not in seen:
            seen[t] = {"tunnel_type": t[0], "_ends": t[1:]}
    return list(seen.values())


TUNNEL_FIELDS = (Field("tunnel_type", zf("tunnel_type"), df("tunnel_type")),)

DNS_FIELDS = (
    Field("proto", zf("proto"), df("proto")),
    Field("originator", _originator_z, lambda r: _endpoints_d(r)[:2]),
    Field("trans_id", zf("trans_id", _int), df("trans_id")),
    Field("query", zf("query", _lower), df("query", _lower)),
    Field("qtype_name", zf("qtype_name", _qtype_name), df("qtype_name")),
    Field("rcode_name", zf("rcode_name"), df("rcode_name")),
    Field("answers", zf("answers", _names), df("answers", _names)),
    Field(
        "TTLs",
        zf("TTLs", lambda v: None if v is None else [int(float(x)) for x in v]),
        df("ttls", lambda v: list(v) if v else None),
    ),
    Field("rtt", zf("rtt", _float), df("rtt_s", _float), close=2e-6),
)

HTTP_FIELDS = (
    Field("originator", _originator_z, lambda r: _endpoints_d(r)[:2]),
    Field("method", zf("method"), df("method")),
    Field("host", zf("host"), df("host")),
    Field("uri", zf("uri"), df("uri", zeek_unescaped_uri)),
    Field("version", zf("version", _http_version), df("version", _http_version)),
    Field("user_agent", zf("user_agent"), df("user_agent")),
    Field("request_body_len", zf("request_body_len", _int), df("request_body_len", _int)),
    Field("response_body_len", zf("response_body_len", _int), df("response_body_len", _int)),
    Field("status_code", zf("status_code", _zeek_status_code), df("status_code", _int)),
    Field("status_msg", zf("status_msg", _zeek_status_msg), df("status_msg")),
)


def _or_none(v: Any) -> Any:
    """An empty value as an unset one (a connection ID dronewatch did not see is `""`)."""
    return v or None


def _zero_len(v: Any) -> Any:
    # Zeek logs 0 for an absent body; dronewatch leaves the field out.
    return 0 if v is None else int(v)


def _established_z(rec: Rec) -> Any:
    """Zeek's `established`, but not of a QUIC connection: dronewatch's quic record has none
    (the TLS handshake ends in QUIC Handshake packets, which Initial keys do not open; Zeek
    logs F for every one)."""
    return SKIP if rec.get("_quic") else zf("established", _bool)(rec)


SSL_FIELDS = (
    Field("originator", _originator_z, lambda r: _endpoints_d(r)[:2]),
    Field("version", zf("version", _tls_version), df("version", _tls_version)),
    Field("cipher", zf("cipher"), df("cipher")),
    Field("server_name", zf("server_name"), df("server_name")),
    Field("established", _established_z, df("established", _bool)),
)

QUIC_FIELDS = (
    Field("originator", _originator_z, lambda r: _endpoints_d(r)[:2]),
    Field("version", zf("version", _zeek_quic_version), df("version", _quic_version)),
    Field("client_initial_dcid", zf("client_initial_dcid"), df("dcid")),
    Field("client_scid", zf("client_scid"), df("scid")),
    Field("server_name", zf("server_name"), df("server_name")),
    Field("client_protocol", zf("client_protocol"), df("alpn", lambda v: v[0] if v else None)),
    Field("server_scid", zf("server_scid", _or_none), df("server_scid", _or_none)),
)

DHCP_FIELDS = (
    Field("mac", zf("mac"), df("mac")),
    Field("host_name", zf("host_name"), df("host_name")),
    Field("requested_addr", zf("requested_addr"), df("requested_addr")),
    Field("assigned_addr", zf("assigned_addr"), df("assigned_addr")),
    Field(
        "msg_types",
        zf("msg_types", lambda v: v.split(",") if isinstance(v, str) else v),
        df("msg_types"),
    ),
)

MQTT_FIELDS = (
    Field("kind", zf("kind"), df("kind")),
    Field("originator", _originator_z, lambda r: _endpoints_d(r)[:2]),
    Field("client_id", zf("client_id"), df("client_id")),
    Field("proto_version", zf("proto_version"), df("proto_version")),
    Field("topic", zf("topic"), df("topic")),
    Field("from_client", zf("from_client"), df("from_client")),
    Field("publishes", zf("publishes"), df("publishes")),
    Field("payload_len", zf("payload_len"), df("payload_len")),
)


# ---- folding records into comparable ones ---------------------------------------------


def zeek_records(log: str, files: list[Path]) -> list[Rec]:
    """The baseline's records of `log`, folded where the tool compares folded ones (mqtt). The
    ssl records of QUIC connections (Zeek logs their TLS handshake in ssl.log too; dronewatch
    in the connection's quic record) are marked `_quic`: `dw_records` pairs them with the quic
    records."""
    if log == "conn":
        return _zeek_conn(files)
    if log == "tunnel":
        tunnels = sorted(set(zeek_tunnels(files).values()))
        return [{"tunnel_type": t[0], "_ends": t[1:]} for t in tunnels]
    if log == "ssl":
        quic = _quic_uids(files[0].parent)
        return [
            {**r, "_quic": True} if r.get("uid") in quic else r
            for f in files
            for r in read_zeek_log(f)
        ]
    if log != "mqtt":
        return [r for f in files for r in read_zeek_log(f)]
    out: list[Rec] = []
    publish: dict[tuple[Any, ...], Rec] = {}
    for f in files:
        for r in read_zeek_log(f):
            if f.name == "mqtt_connect.log":
                out.append({**r, "kind": "connect", "topic": None, "from_client": None})
            elif f.name == "mqtt_subscribe.log":
                if r.get("action", "").endswith("UNSUBSCRIBE"):
                    continue
                for topic in r.get("topics") or []:
                    out.append({**r, "kind": "subscribe", "topic": topic, "from_client": None})
            else:
                key = (_endpoints_z(r), r.get("topic"), r.get("from_client") == "T")
                agg = publish.get(key)
                if agg is None:
                    agg = publish[key] = {
                        **{k: r[k] for k in ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p")},
                        "ts": r.get("ts"),
                        "kind": "publish",
                        "topic": r.get("topic"),
                        "from_client": key[2],
                        "publishes": 0,
                        "payload_len": 0,
                    }
                    out.append(agg)
                agg["publishes"] += 1
                agg["payload_len"] += int(r.get("payload_len") or 0)
    return out


def _quic_uids(directory: Path) -> set[Any]:
    """The uids of a baseline's QUIC connections: those of its quic.log, and those its conn.log
    (or a cut of it) gives the service `quic` (a baseline may keep the ssl.log alone)."""
    uids: set[Any] = set()
    for name in ("quic.log", "conn.log", "conn.log.cut"):
        path = directory / name
        if not path.is_file():
            continue
        for r in read_zeek_log(path):
            if name == "quic.log" or "quic" in str(r.get("service") or "").split(","):
                uids.add(r.get("uid"))
    uids.discard(None)
    return uids


def dw_records(log: str, records: dict[str, list[Rec]]) -> list[Rec]:
    """dronewatch's records that compare with Zeek's `log`."""
    if log == "conn":
        return records.get("flows", [])
    if log == "ssl":
        # The TLS of a QUIC connection is in its quic record (`tls_version`), when its client
        # Initials decrypted (a version without keys shows no TLS, and Zeek logs no ssl).
        quic = [
            {**r, "version": r.get("tls_version")}
            for r in records.get("quic", [])
            if r.get("version") in ("1", "2")
        ]
        return records.get("tls", []) + quic
    if log == "tunnel":
        return _dw_tunnels(records.get("flows", []))
    if log == "dns":  # Zeek's DNS analyzer reads mDNS too: one dns.log line per message
        mdns = [{**r, "proto": "udp"} for r in records.get("mdns_messages", [])]
        return records.get("dns", []) + mdns
    if log == "dhcp":
        return _dhcp_transactions(records.get("dhcp", []))
    if log == "mqtt":
        out = []
        for r in records.get("mqtt", []):
            kind = r["msg_type"]
            out.append(
                {
                    **r,
                    "kind": kind,
                    "topic": r.get("topic"),
                    "from_client": (r.get("direction") == "orig") if kind == "publish" else None,
                    "client_id": r.get("client_id") if kind == "connect" else None,
                    "proto_version": r.get("proto_version") if kind == "connect" else None,
                    "payload_len": r.get("payload_bytes") if kind == "publish" else None,
                }
            )
        return out
    return records.get(log, [])


def _dhcp_transactions(messages: list[Rec]) -> list[Rec]:
    """dronewatch's per-message DHCP records folded as Zeek's dhcp.log folds them: by
    transaction id (a new entry after 5 s of silence), the last value of each field winning."""
    out: list[Rec] = []
    open_: dict[Any, Rec] = {}
    for m in sorted(messages, key=lambda r: r["ts"]):
        key = m.get("trans_id")
        rec = open_.get(key)
        if rec is None or m["ts"] - rec["_last"] > 5.0:
            rec = open_[key] = {
                "ts": m["ts"],
                "mac": m.get("client_mac"),
                "host_name": None,
                "requested_addr": None,
                "assigned_addr": None,
                "msg_types": [],
            }
            out.append(rec)
        rec["_last"] = m["ts"]
        rec["msg_types"].append(m.get("msg_type"))
        for src, dst in (
            ("hostname", "host_name"),
            ("requested_ip", "requested_addr"),
            ("assigned_ip", "assigned_addr"),
        ):
            if m.get(src):
                rec[dst] = m[src]
    return out


LOG_FIELDS = {
    "conn": CONN_FIELDS,
    "dns": DNS_FIELDS,
    "http": HTTP_FIELDS,
    "ssl": SSL_FIELDS,
    "quic": QUIC_FIELDS,
    "dhcp": DHCP_FIELDS,
    "mqtt": MQTT_FIELDS,
    "tunnel": TUNNEL_FIELDS,
}


def group_key(log: str, rec: Rec, zeek: bool) -> tuple[Any, ...]:
    """Records that may pair share this key (no uid, no time)."""
    if log == "dhcp":
        return (rec.get("mac"),)
    if log == "tunnel":
        return (rec["tunnel_type"], *rec["_ends"])
    if zeek and not _has_endpoints(rec):
        return ("*",)  # a cut baseline naming only uids: paired within the trace
    ends = _unordered(_endpoints_z(rec) if zeek else _endpoints_d(rec))
    if log == "conn":
        proto = rec.get("proto") if zeek else _conn_proto(rec.get("proto"))
        if proto == "unknown_transport":
            # A transport Zeek has no analyzer for (SCTP...) has no ports in its conn.log (0),
            # where dronewatch reads them as the Community ID specification does: the addresses
            # pair the record, the ports are a spelling.
            ends = _unordered((ends[0][0], "0", ends[1][0], "0"))
        return (ends,)  # the protocol is a compared field (cut baselines lack it)
    if log == "dns":
        return (ends, str(rec.get("trans_id")))
    if log == "mqtt":
        return (ends, rec.get("kind"))
    return (ends,)


# ---- comparing --------------------------------------------------------------------------------


def same(f: Field, a: Any, b: Any) -> bool:
    """Equal values, numbers within `f.close`."""
    if f.close and isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= f.close
    if isinstance(a, OneOf):
        return b in a
    return bool(a == b)


def _ts(rec: Rec) -> float | None:
    v = rec.get("ts")
    try:
        return float(v) if v is not None else None
    except ValueError:
        return None  # masked by the btest canonifier (XXXXXXXXXX.XXXXXX)


@dataclass
class Tally:
    """Agreement counts for one log."""

    fields: Counter[str] = field(default_factory=Counter)
    agree: Counter[str] = field(default_factory=Counter)
    zeek_records: int = 0
    paired: int = 0
    extra: int = 0
    diffs: list[tuple[str, str, Any, Any]] = field(default_factory=list)
    """(trace, field, zeek value, dronewatch value) of each disagreement (unpaired: field `*`)."""

    def add(self, other: Tally) -> None:
        self.fields.update(other.fields)
        self.agree.update(other.agree)
        self.zeek_records += other.zeek_records
        self.paired += other.paired
        self.extra += other.extra
        self.diffs.extend(other.diffs)

    @property
    def total(self) -> int:
        return sum(self.fields.values())

    @property
    def agreeing(self) -> int:
        return sum(self.agree.values())


def compare_log(log: str, zrecs: list[Rec], drecs: list[Rec], trace: str) -> Tally:
    """Pair and compare one log's records of one trace."""
    fields = LOG_FIELDS[log]
    tally = Tally(zeek_records=len(zrecs))
    groups: dict[tuple[Any, ...], tuple[list[Rec], list[Rec]]] = defaultdict(lambda: ([], []))
    for r in zrecs:
        groups[group_key(log, r, True)][0].append(r)
    cut = ("*",) in groups
    for r in drecs:
        groups[("*",) if cut else group_key(log, r, False)][1].append(r)
    for zs, ds in groups.values():
        pairs = _pair(fields, zs, ds)
        used = set()
        for zi, di in pairs:
            used.add(di)
            tally.paired += 1
            z, d = zs[zi], ds[di]
            for f in fields:
                zv = f.zeek(z)
                if zv is SKIP:
                    continue
                dv = f.dw(d)
                tally.fields[f.name] += 1
                if same(f, zv, dv):
                    tally.agree[f.name] += 1
                else:
                    tally.diffs.append((trace, f.name, zv, dv))
        for zi in set(range(len(zs))) - {zi for zi, _ in pairs}:
            z = zs[zi]
            for f in fields:
                if f.zeek(z) is not SKIP:
                    tally.fields[f.name] += 1
            tally.diffs.append((trace, "*", _brief(log, z, True), None))
        for di in set(range(len(ds))) - used:
            tally.extra += 1
            tally.diffs.append((trace, "+", None, _brief(log, ds[di], False)))
    return tally


def _brief(log: str, rec: Rec, zeek: bool) -> str:
    if log == "dhcp":
        return f"dhcp {rec.get('mac')} {rec.get('msg_types')}"
    if log == "tunnel":
        return f"tunnel {rec['tunnel_type']} {' '.join(rec['_ends'])}"
    ends = _endpoints_z(rec) if zeek else _endpoints_d(rec)
    extra = rec.get("query") or rec.get("uri") or rec.get("topic") or rec.get("history") or ""
    return f"{log} {ends[0]}:{ends[1]} > {ends[2]}:{ends[3]} {rec.get('proto', '')} {extra}"


def _pair(fields: Iterable[Field], zs: list[Rec], ds: list[Rec]) -> list[tuple[int, int]]:
    """Pair the records of one group: closest start times when both are known, then the most
    agreeing fields, then the order written."""
    if not zs or not ds:
        return []
    if len(zs) == 1 and len(ds) == 1:
        return [(0, 0)]
    fields = list(fields)
    scored = []
    for zi, z in enumerate(zs):
        zt = _ts(z)
        for di, d in enumerate(ds):
            dt = _ts(d)
            gap = abs(zt - dt) if zt is not None and dt is not None else 0.0
            score = sum(1 for f in fields if (zv := f.zeek(z)) is not SKIP and same(f, zv, f.dw(d)))
            scored.append((round(gap, 4), -score, abs(zi - di), zi, di))
    scored.sort()
    taken_z: set[int] = set()
    taken_d: set[int] = set()
    pairs = []
    for _gap, _score, _order, zi, di in scored:
        if zi in taken_z or di in taken_d:
            continue
        taken_z.add(zi)
        taken_d.add(di)
        pairs.append((zi, di))
    return pairs


def is_tunnelled(case: Case) -> bool:
    """The trace carries tunnels. A `--btest` run leaves such traces out (its published
    figures are of traces seen directly); the copied set (`--set`, tests/golden/test_zeek.py)
    compares its tunnel traces, the tunnel of each inner connection and tunnel.log included."""
    if case.name.startswith("tunnels/"):
        return True
    for path in case.baselines.get("conn", []):
        base = path.parent
        if (base / "tunnel.log").is_file():
            return True
        for r in read_zeek_log(path):
            if r.get("tunnel_parents"):
                return True
            services = str(r.get("service") or "").split(",")
            if any(s in TUNNEL_SERVICES for s in services):
                return True
    return False


class Encapsulated(Exception):
    """The trace carries a link-layer encapsulation dronewatch does not read yet."""


def compare_case(case: Case) -> dict[str, Tally]:
    """Run dronewatch over one trace and compare each log Zeek wrote for it."""
    records = run_dronewatch(case.trace, case.checksums)
    encaps = encapsulations(records)
    if encaps:
        raise Encapsulated(", ".join(encaps))
    for cap in records.get("capture", []):
        if cap.get("analyzer_errors"):
            raise RuntimeError(f"analyzers failed: {cap['analyzer_errors']}")
    out = {}
    for log, files in case.baselines.items():
        out[log] = compare_log(log, zeek_records(log, files), dw_records(log, records), case.name)
    return out


def summary(totals: dict[str, Tally]) -> dict[str, Any]:
    """Per-log and per-field agreement, as JSON-ready data."""
    out: dict[str, Any] = {}
    for log in LOGS:
        t = totals.get(log)
        if t is None or not t.total:
            continue
        out[log] = {
            "agreement": round(100.0 * t.agreeing / t.total, 2),
            "fields_compared": t.total,
            "zeek_records": t.zeek_records,
            "paired": t.paired,
            "extra": t.extra,
            "by_field": {
                name: {
                    "agreement": round(100.0 * t.agree[name] / n, 2),
                    "compared": n,
                }
                for name, n in sorted(t.fields.items())
            },
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--btest", type=Path, help="a checkout of Zeek's testing/btest/")
    parser.add_argument("--set", type=Path, help="a copied set (DIR/<name>/trace + logs)")
    parser.add_argument("--only", help="comma-separated substrings of trace names")
    parser.add_argument("--logs", default=",".join(LOGS), help="logs to compare")
    parser.add_argument("--diffs", type=int, default=0, help="print up to N differences per log")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    parser.add_argument("--per-trace", action="store_true", help="agreement of every trace")
    parser.add_argument(
        "--traces", type=Path, help="compare only the traces named in this file (one a line)"
    )
    parser.add_argument(
        "--write-traces", type=Path, help="write the names of the traces compared to this file"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    if args.btest:
        cases, left_out = btest_cases(args.btest)
    elif args.set:
        cases, left_out = set_cases(args.set), Counter()
    else:
        parser.error("give --btest or --set")
    wanted = set(args.logs.split(","))
    if args.only:
        keys = args.only.split(",")
        cases = [c for c in cases if any(k in c.name for k in keys)]
    if args.traces:
        chosen = set(args.traces.read_text().split())
        cases = [c for c in cases if c.name in chosen]
    totals: dict[str, Tally] = {}
    failed: list[str] = []
    tunnels: list[str] = []
    per_trace: dict[str, dict[str, float]] = {}
    for case in cases:
        case.baselines = {k: v for k, v in case.baselines.items() if k in wanted}
        if not case.baselines:
            continue
        if args.btest and is_tunnelled(case):
            tunnels.append(case.name)
            continue
        try:
            result = compare_case(case)
        except Encapsulated as exc:
            tunnels.append(f"{case.name} ({exc})")
            continue
        except Exception as exc:  # a trace dronewatch cannot read is reported, not fatal
            failed.append(f"{case.name}: {type(exc).__name__}: {exc}")
            continue
        for log, tally in result.items():
            totals.setdefault(log, Tally()).add(tally)
            if tally.total:
                per_trace.setdefault(case.name, {})[log] = round(
                    100.0 * tally.agreeing / tally.total, 2
                )
    figures = summary(totals)
    print(f"traces compared: {len(per_trace)}; tunnelled or encapsulated, left out: {len(tunnels)}")
    for reason, n in sorted(left_out.items()):
        print(f"baselines left out ({reason}): {n}")
    for line in failed:
        print(f"FAILED {line}")
    for log, fig in figures.items():
        print(
            f"\n{log}: {fig['agreement']:.2f}% of {fig['fields_compared']} field values "
            f"({fig['zeek_records']} Zeek records, {fig['paired']} paired, "
            f"{fig['extra']} only in dronewatch)"
        )
        for name, f in fig["by_field"].items():
            print(f"  {name:20} {f['agreement']:7.2f}%  of {f['compared']}")
        if args.diffs:
            for trace, name, zv, dv in totals[log].diffs[: args.diffs]:
                print(f"    {trace}: {name}: zeek={zv!r} dronewatch={dv!r}")
    if args.per_trace:
        print()
        for name, logs in sorted(per_trace.items()):
            print(f"{name}: " + ", ".join(f"{k} {v:.1f}" for k, v in logs.items()))
    if args.write_traces:
        args.write_traces.write_text("".join(f"{name}\n" for name in sorted(per_trace)))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"logs": figures, "traces": per_trace, "tunnelled": tunnels, "failed": failed},
                indent=1,
                sort_keys=True,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
