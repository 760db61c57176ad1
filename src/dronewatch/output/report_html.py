"""The HTML of `dronewatch report`: one self-contained file that opens offline.

Every string from the wire (names, SNI, HTTP hosts, DNS answers, hostnames) goes through `esc`:
made printable (controls and bidirectional overrides spelt out) and then HTML-escaped, so a
hostile name shows as text and never becomes markup. The data the chart reads is embedded as a
JSON block with `<`, `>` and `&` escaped. The file's Content-Security-Policy allows nothing but
its own inline scripts and styles (by hash): it makes no request, even when opened online. The
chart library (uPlot), the chart code and the world map are the files the web page serves
(`dronewatch/api/web/`), inlined.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from dronewatch.geoip.onlink import on_link_text
from dronewatch.judge.alert import (
    NOTE_ATTEMPT,
    NOTE_DNS,
    NOTE_LEAK,
    NOTE_OTHER_APP,
    is_lookup,
    utc_time,
)
from dronewatch.judge.monitor import VerdictRecord
from dronewatch.judge.verdict import checksums_text, encrypted_text, gaps_text, stopped_text
from dronewatch.output.diff import DiffRow
from dronewatch.output.report import DestinationFacts, ReportCollector
from dronewatch.output.terminal import printable
from dronewatch.output.timeline import build_timeline, merge_windows

TIMELINE_BUCKETS = 160
VERDICT_WORDS = {
    "violation": ("Violation", "data left while local-data mode was on"),
    "clean": ("Nothing left", "nothing left the device while local-data mode was on"),
    "incomplete": ("Incomplete", "nothing seen leaving, but the capture did not see everything"),
    "not_applicable": ("LDM off", "local-data mode was off: nothing to judge"),
}
NAME_LABELS = {"sni": "SNI", "quic_sni": "QUIC SNI", "http_host": "HTTP host", "dns_name": "DNS"}
NOTE_WORDS = {
    NOTE_LEAK: "data left",
    NOTE_DNS: "vendor lookup",
    NOTE_OTHER_APP: "other app",
    NOTE_ATTEMPT: "attempt, nothing delivered",
}

Windows = tuple[tuple[float, float | None], ...]
LdmWindows = Callable[[int, str, str | None], Windows]
"""(capture, host IP, host MAC) -> the windows LDM was on for that host in that capture."""


@dataclass(frozen=True, slots=True)
class Provenance:
    """What the result can be reproduced from: the program, its options and its data."""

    version: str
    command: str
    options: Sequence[tuple[str, str]]
    """Policy and analysis options, as (name, value)."""
    packs: Sequence[tuple[str, str, str, int, str | None]]
    """Rule packs: name, version, path, rules, sha256 of the file."""
    geoip: Sequence[tuple[str, str, str, str | None]]
    """GeoIP databases: type, build date, path, sha256 of the file."""
    geoip_note: str | None = None
    """Where the bundled GeoIP data came from, and its licence."""


@dataclass(frozen=True, slots=True)
class DiffPart:
    """The `--diff A B` comparison: what left the devices in one capture and not the other."""

    a: str
    b: str
    rows: Sequence[DiffRow]
    names_only_a: Sequence[str]
    names_only_b: Sequence[str]


# --- text -------------------------------------------------------------------------------------


def esc(value: object) -> str:
    """A value as HTML text: printable (controls and bidi overrides spelt out), then escaped."""
    return html.escape(printable(str(value)), quote=True)


def fmt_bytes(n: int | None) -> str:
    """Bytes for people (1024-based, as the web page shows them)."""
    if n is None:
        return "-"
    value, units, i = float(n), ("B", "KB", "MB", "GB", "TB"), 0
    while value >= 1024 and i < len(units) - 1:
        value /= 1024
        i += 1
    return f"{value:.1f} {units[i]}" if i else f"{int(value)} B"


def fmt_time(ts: float | None) -> str:
    """A network time in UTC, to the second."""
    if ts is None or not math.isfinite(ts):
        return "-"
    return utc_time(ts).strftime("%Y-%m-%d %H:%M:%S UTC")


def _bytes(n: int) -> str:
    """A byte count for people, exact in its tooltip."""
    return f'<span title="{n:,} bytes">{fmt_bytes(n)}</span>'


def _sub(text: object) -> str:
    """A second, smaller line in a cell."""
    return f'<span class="sub">{esc(text)}</span>'


def _swatch(category: str) -> str:
    return f'<span class="swatch" data-category="{esc(category)}"></span>{esc(category)}'


Column = tuple[str, str]
"""A table column: its heading and its class (`num` right-aligns, `w-*` sets a width)."""
Row = tuple[str, Sequence[str]]
"""A table row: its class and its cells' inner HTML (already escaped)."""


def _table(caption: str, columns: Sequence[Column], rows: Iterable[Row]) -> str:
    """A table whose cells carry their column's name (narrow screens show it before them)."""
    body = []
    for row_class, cells in rows:
        tds = "".join(
            f'<td class="{cls}" data-label="{esc(head)}">{cell}</td>'
            for (head, cls), cell in zip(columns, cells, strict=True)
        )
        body.append(f'<tr class="{row_class}">{tds}</tr>' if row_class else f"<tr>{tds}</tr>")
    if not body:
        return f'<p class="muted">{esc(caption)}: none.</p>'
    head = "".join(f'<th scope="col" class="{cls}">{esc(h)}</th>' for h, cls in columns)
    return (
        f'<table class="data"><caption>{esc(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


# --- assets -----------------------------------------------------------------------------------


def _asset(package: str, *parts: str) -> str:
    return resources.files(package).joinpath(*parts).read_text(encoding="utf-8")


def _inline_safe(text: str, tag: str) -> str:
    """`text` to put inside a <script> or <style> element; refuses one that would end it."""
    if f"</{tag}" in text.lower() or "<!--" in text:
        raise ValueError(f"an inlined {tag} may not contain </{tag} or <!--")
    return text


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def json_block(data: Any) -> str:
    """JSON to embed in a <script type="application/json"> element: no `<`, `>` or `&`."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


class _Sums:
    """Bytes, flows and destinations summed over a group of destinations."""

    def __init__(self) -> None:
        self.bytes_out = 0
        self.flows = 0
        self.dests: set[str] = set()
        self.other: set[str] = set()

    def add(self, d: DestinationFacts, other: str) -> None:
        self.bytes_out += d.bytes_out
        self.flows += d.flows
        self.dests.add(d.dest)
        self.other.add(other)


# --- the sections -------------------------------------------------------------------------------


class _Report:
    """Builds the sections of one report from the collected records."""

    def __init__(
        self,
        data: ReportCollector,
        provenance: Provenance,
        diff: DiffPart | None,
        ldm_windows: LdmWindows,
    ) -> None:
        self.data = data
        self.prov = provenance
        self.diff = diff
        self.ldm_windows = ldm_windows
        self.world = json.loads(_asset("dronewatch.api", "web", "vendor", "world.json"))
        self.countries = {c["iso2"]: c for c in self.world["countries"]}
        self.multi = len(data.captures) > 1

    def cap_name(self, i: int) -> str:
        path = self.data.captures[i].path
        return path.rsplit("/", 1)[-1] or path

    def hostname(self, i: int, ip: str) -> str | None:
        dev = self.data.devices.get((i, ip))
        return dev.hostname if dev is not None else None

    def device_name(self, i: int, ip: str) -> str:
        host = self.hostname(i, ip)
        name = f"{host} ({ip})" if host else ip
        return f"{name}, capture {i + 1}" if self.multi else name

    def answer(self) -> str:
        verdicts = [v for _, v in self.data.verdicts]
        on = [v for v in verdicts if v.verdict != "not_applicable"]
        bad = [v for v in on if v.verdict == "violation"]
        unsure = [v for v in on if v.verdict == "incomplete"]
        cls = "answer"
        if not verdicts:
            text = "No ground station was found in the captures."
        elif not on:
            text = "Local-data mode was off for every ground station: nothing to judge."
        elif bad:
            cls = "answer answer-bad"
            names = ", ".join(sorted({v.device_name or v.device_ip for v in bad}))
            text = (
                f"Yes: {len(bad)} of {len(on)} ground-station verdicts with local-data mode on "
                f"found data leaving the device ({names})."
            )
        elif unsure:
            cls = "answer answer-unsure"
            text = (
                f"Nothing seen leaving, but coverage is incomplete for {len(unsure)} of "
                f"{len(on)} ground-station verdicts: this is not proof."
            )
        else:
            cls = "answer answer-good"
            text = f"No: nothing left the {len(on)} ground stations with local-data mode on."
        return f'<p class="{cls}" id="answer">{esc(text)}</p>'

    def caveats(self, i: int, v: VerdictRecord) -> list[str]:
        """What limits a verdict: drops, damage, evictions, content gaps, stopped inspections,
        checksum drops, snap length, analyzer errors."""
        cap = self.data.captures[i]
        rec = cap.record
        out = []
        if v.drops is None:
            out.append("drops not reported by the capture")
        elif v.drops:
            out.append(f"{v.drops:,} packets dropped while capturing")
        if not v.capture_complete:
            out.append("the capture is damaged (cut short or corrupt): what follows was unseen")
        if cap.evicted:
            out.append(f"{cap.evicted:,} flows evicted from a full flow table")
        if rec is not None and rec.gap_flows:
            out.append(gaps_text(rec.gap_flows, rec.missed_bytes or 0))
        if rec is not None and rec.inspection_stopped:
            out.append(stopped_text(rec.inspection_stopped))
        if rec is not None and rec.bad_checksums:
            out.append(checksums_text(rec.bad_checksums))
        if rec is not None and rec.non_ip.get("dot11-protected"):
            out.append(encrypted_text(rec.non_ip["dot11-protected"], "in the capture "))
        if rec is not None and rec.truncated:
            out.append(f"{rec.truncated:,} packets cut by the snap length")
        if rec is not None and rec.analyzer_errors:
            failed = ", ".join(f"{k} ({n})" for k, n in sorted(rec.analyzer_errors.items()))
            out.append(f"analyzer errors: {failed}")
        if v.packets == 0:
            out.append("no packet of this device was inspected")
        return out

    def verdict_cards(self) -> str:
        cards = []
        for i, v in self.data.verdicts:
            badge, meaning = VERDICT_WORDS.get(v.verdict, (v.verdict, ""))
            name = v.device_name or v.device_ip
            ident = [x for x in (v.device_ip, v.device_mac, self.hostname(i, v.device_ip)) if x]
            ident = [x for x in dict.fromkeys(ident) if x != name]
            ident.append(f"capture {i + 1}: {self.cap_name(i)}")
            sent = "Sent off the device" if v.ldm == "off" else "Sent while LDM on"
            facts = [
                ("Local-data mode", f"{v.ldm}, scope {v.scope} ({self.data.captures[i].ldm})"),
                (
                    sent,
                    f"{fmt_bytes(v.bytes_out)} ({v.bytes_out:,} bytes) to {v.destinations} "
                    f"destinations",
                ),
                ("Categories", ", ".join(v.categories) or "none"),
                ("Alerts", f"{v.alerts}, of which {v.vendor_dns_lookups} vendor DNS lookups"),
                ("Exempt", f"{fmt_bytes(v.allowed_bytes)} to allowed destinations"),
                ("Packets inspected", f"{v.packets:,} ({v.local_link_packets:,} on drone links)"),
                ("Aircraft", ", ".join(v.aircraft) or "none seen"),
                ("Why a ground station", "; ".join(v.reasons) or "-"),
            ]
            dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(val)}</dd>" for k, val in facts)
            caveats = self.caveats(i, v)
            cov = (
                '<ul class="caveats">' + "".join(f"<li>{esc(c)}</li>" for c in caveats) + "</ul>"
                if caveats
                else "full: no drops, no damage, no eviction"
            )
            cards.append(
                f'<article class="card verdict-{esc(v.verdict)}" data-verdict="{esc(v.verdict)}"'
                f' data-device="{esc(v.device_ip)}">'
                f'<div class="card-head"><h3>{esc(name)}</h3>'
                f'<span class="badge badge-{esc(v.verdict)}" title="{esc(meaning)}">'
                f"{esc(badge)}</span></div>"
                f'<p class="ident">{esc(" · ".join(ident))}</p>'
                f'<p class="verdict-msg">{esc(v.msg)}</p>'
                f'<dl class="facts">{dl}<dt>Coverage</dt><dd>{cov}</dd></dl></article>'
            )
        if not cards:
            considered = sorted(
                (d for d in self.data.devices.values() if d.not_judged), key=lambda d: d.ip
            )
            items = "".join(
                f"<li>{esc(d.ip)}{esc(f' ({d.hostname})' if d.hostname else '')}: "
                f"{esc(d.not_judged or '')}</li>"
                for d in considered
            )
            listed = f"<p>Local hosts considered:</p><ul>{items}</ul>" if items else ""
            return (
                '<p class="muted">No ground station was recognised and no device was named, so '
                "there is no verdict.</p>"
                + listed
                + "<p>Name the device under test to judge it: <code>--device IP|MAC|CIDR|NAME"
                "</code> (or a device in <code>--policy</code>).</p>"
            )
        return '<div class="cards">' + "".join(cards) + "</div>"

    def captures_table(self) -> str:
        rows: list[Row] = []
        for cap in self.data.captures:
            rec = cap.record
            file_cell = esc(cap.path) + _sub(f"sha256 {cap.sha256 or '-'}") + _sub(cap.ldm)
            if rec is None:
                rows.append(("", [file_cell, "not read", "-", "-", "-", "-"]))
                continue
            span = (rec.last_ts or rec.ts) - rec.ts
            links = ", ".join(f"{k} {n:,}" for k, n in rec.linktypes.items()) or "-"
            drops = "not reported" if rec.drops is None else f"{rec.drops:,}"
            problems = [
                f"drops {drops}",
                f"malformed {rec.malformed:,}",
                f"wrong checksums {rec.bad_checksums or 0:,}",
                f"encrypted 802.11 data frames {rec.non_ip.get('dot11-protected', 0):,}",
                f"cut by the snap length {rec.truncated:,}",
                f"flows evicted {cap.evicted:,}",
                f"flows with content gaps {rec.gap_flows or 0:,} ({rec.missed_bytes or 0:,} bytes)",
                f"flows whose inspection stopped {rec.inspection_stopped or 0:,}",
            ]
            if rec.analyzer_errors:
                errors = ", ".join(f"{k} {n}" for k, n in sorted(rec.analyzer_errors.items()))
                problems.append(f"analyzer errors {errors}")
            on_link = on_link_text(rec.on_link, rec.on_link_refused)
            if on_link:
                problems.append(on_link)
            state = "complete" if rec.complete else "damaged: " + "; ".join(rec.errors)
            rows.append(
                (
                    "",
                    [
                        file_cell,
                        f"{esc(rec.format)}, {rec.packets:,} packets, {fmt_bytes(rec.bytes)}"
                        + _sub(links),
                        esc(fmt_time(rec.ts)) + _sub(f"to {fmt_time(rec.last_ts)} ({span:,.1f} s)"),
                        f"{rec.flows:,}",
                        esc(state),
                        esc("; ".join(problems)),
                    ],
                )
            )
        return _table(
            "Captures read",
            [
                ("File", "w-file"),
                ("Contents", "w-contents"),
                ("First and last packet", "w-time2"),
                ("Flows", "num w-flows"),
                ("Read", "w-state"),
                ("Coverage", ""),
            ],
            rows,
        )

    def timeline_views(self) -> list[dict[str, Any]]:
        """The chart's views: all devices, each capture (when several), each device."""
        spans = self.data.spans
        if not spans:
            return []

        def view(label: str, picked: set[tuple[int, str]]) -> dict[str, Any]:
            own = [s for i, h, s in spans if (i, h) in picked]
            lo = min(s.ts for s in own)
            hi = max(s.last_ts for s in own)
            line = build_timeline(own, lo, hi, TIMELINE_BUCKETS).to_dict()
            windows = [w for i, h in picked for w in self._capture_windows(i, h)]
            line["ldm_on"] = merge_windows(windows, line["start"], line["end"])
            return {"label": label, "data": line}

        pairs = sorted({(i, h) for i, h, _ in spans})
        views = [view("All devices" + (", all captures" if self.multi else ""), set(pairs))]
        if self.multi:
            for i in range(len(self.data.captures)):
                mine = {p for p in pairs if p[0] == i}
                if mine:
                    views.append(view(f"Capture {i + 1}: {self.cap_name(i)}", mine))
        views.extend(view(self.device_name(i, h), {(i, h)}) for i, h in pairs)
        return views

    def _capture_windows(self, i: int, host: str) -> list[tuple[float, float | None]]:
        """When LDM was on for a host, within the span of the capture it was judged in (the
        captures of a --diff pair are judged with different settings)."""
        rec = self.data.captures[i].record
        if rec is None:
            return []
        lo, hi = rec.ts, rec.last_ts if rec.last_ts is not None else rec.ts
        windows = self.ldm_windows(i, host, self._mac(i, host))
        return [(a, b) for a, b in merge_windows(windows, lo, hi)]

    def _mac(self, i: int, host: str) -> str | None:
        dev = self.data.devices.get((i, host))
        return dev.mac if dev is not None else None

    def category_totals(self) -> str:
        totals: dict[str, list[int]] = {}
        for d in self.data.destinations.values():
            t = totals.setdefault(d.category, [0, 0, 0])
            t[0] += d.bytes_out
            t[1] += 1
            t[2] += d.flows
        rows: list[Row] = [
            ("", [_swatch(c), _bytes(t[0]), f"{t[1]:,}", f"{t[2]:,}"])
            for c, t in sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0]))
        ]
        return _table(
            "Bytes off the devices by category",
            [("Category", ""), ("Bytes out", "num"), ("Destinations", "num"), ("Flows", "num")],
            rows,
        )

    def where_tables(self) -> str:
        by_country: dict[str, _Sums] = {}
        by_asn: dict[tuple[int | None, str | None], _Sums] = {}
        for d in self.data.destinations.values():
            by_country.setdefault(d.country or "", _Sums()).add(d, d.host_ip)
            by_asn.setdefault((d.asn, d.as_org), _Sums()).add(d, d.country or "-")
        country_rows: list[Row] = []
        for code, c in sorted(by_country.items(), key=lambda kv: (-kv[1].bytes_out, kv[0])):
            name = self.countries.get(code, {}).get("name") if code else None
            label = f"{name} ({code})" if name else (code or "unknown")
            cells = [esc(label), _bytes(c.bytes_out), f"{len(c.dests):,}", f"{c.flows:,}"]
            country_rows.append(("", [*cells, esc(", ".join(sorted(c.other)))]))
        asn_rows: list[Row] = []
        for (asn, org), a in sorted(by_asn.items(), key=lambda kv: -kv[1].bytes_out):
            cells = [esc(f"AS{asn}" if asn else "unknown"), esc(org or "-")]
            cells += [esc(", ".join(sorted(a.other))), _bytes(a.bytes_out)]
            asn_rows.append(("", [*cells, f"{len(a.dests):,}", f"{a.flows:,}"]))
        country_table = _table(
            "By country",
            [
                ("Country", ""),
                ("Bytes out", "num"),
                ("Destinations", "num"),
                ("Flows", "num"),
                ("Devices", ""),
            ],
            country_rows,
        )
        asn_table = _table(
            "By autonomous system",
            [
                ("ASN", "w-type"),
                ("Organisation", ""),
                ("Country", "w-type"),
                ("Bytes out", "num"),
                ("Destinations", "num"),
                ("Flows", "num"),
            ],
            asn_rows,
        )
        return f'<div class="two">{country_table}{asn_table}</div>'

    def world_map(self) -> str:
        groups: dict[tuple[str, str], list[int]] = {}
        for d in self.data.destinations.values():
            if d.country and d.country in self.countries:
                g = groups.setdefault((d.country, d.category), [0, 0])
                g[0] += d.bytes_out
                g[1] += 1
        land = "".join(
            f'<path class="land" d="{esc(c["d"])}"><title>{esc(c["name"])}</title></path>'
            for c in self.world["countries"]
        )
        ordered = sorted(groups.items(), key=lambda kv: (-kv[1][0], kv[0]))
        per_country: dict[str, int] = {}
        for (code, _), _ in ordered:
            per_country[code] = per_country.get(code, 0) + 1
        dots = []
        for n, ((code, cat), (sent, count)) in enumerate(ordered):
            c = self.countries[code]
            spread = 2.2 if per_country[code] > 1 else 0.0  # categories around the centroid
            x = c["cx"] + spread * math.cos(n * 2.4)
            y = c["cy"] + spread * math.sin(n * 2.4)
            r = max(1.2, min(5.0, math.sqrt(sent / 8192)))
            dots.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" data-category="{esc(cat)}"'
                f' data-country="{esc(code)}"><title>{esc(c["name"])}: {esc(cat)}, {count} '
                f"destinations, {esc(fmt_bytes(sent))} out</title></circle>"
            )
        return (
            '<div class="map-wrap"><svg class="map" role="img" '
            f'viewBox="{esc(self.world["viewBox"])}" '
            'aria-label="World map of the destinations, by category">'
            f'<g>{land}</g><g class="dots">{"".join(dots)}</g></svg></div>'
        )

    def evidence_table(self) -> str:
        rows: list[Row] = []
        for d in sorted(
            self.data.destinations.values(), key=lambda d: (d.capture, d.first, d.dest)
        ):
            ports = ", ".join(f"{p}/{proto}" for p, proto in sorted(d.ports))
            names = "".join(
                f'<span class="fact"><b>{NAME_LABELS[k]}</b> {esc(v)}</span>'
                for k, v in d.names.items()
            )
            who = " / ".join(x for x in (d.vendor, d.app) if x and x not in ("unknown", "any"))
            where = " / ".join(
                x for x in (d.country, f"AS{d.asn}" if d.asn else None, d.as_org) if x
            )
            rows.append(
                (
                    "",
                    [
                        esc(self.device_name(d.capture, d.host_ip)),
                        esc(d.dest) + _sub(f"{', '.join(d.ips)} · {ports}"),
                        _swatch(d.category) + _sub(who or "-") + _sub(d.rule_id or "no rule"),
                        names or "-",
                        esc(where or "-"),
                        _bytes(d.bytes_out),
                        _bytes(d.bytes_in),
                        f"{d.flows:,}",
                        esc(fmt_time(d.first)) + _sub(f"to {fmt_time(d.last)}"),
                    ],
                )
            )
        return _table(
            "What left each device, per destination and category",
            [
                ("Device", "w-dev"),
                ("Destination", "w-dest"),
                ("Category", "w-cat"),
                ("Names seen", ""),
                ("Where", "w-where"),
                ("Bytes out", "num w-num"),
                ("Bytes in", "num w-num"),
                ("Flows", "num w-flows"),
                ("First and last seen", "w-time"),
            ],
            rows,
        )

    def alerts_table(self) -> str:
        rows: list[Row] = []
        for _, a in sorted(self.data.alerts, key=lambda x: (x[0], x[1].first_seen, x[1].id)):
            dest = a.dest_name or a.dest_ip or "?"
            if is_lookup(a):
                dest = f"DNS lookup of {dest}"
            elif a.dest_port:
                dest = f"{dest}:{a.dest_port}"
            rows.append(
                (
                    "",
                    [
                        f'<span class="sev sev-{esc(a.severity)}">{esc(a.severity)}</span>',
                        esc(a.device_ip),
                        esc(dest) + _sub(NOTE_WORDS.get(a.note, a.note)),
                        _swatch(a.category),
                        esc(a.rule_id or "-"),
                        _bytes(a.bytes_out),
                        f"{a.flows:,}",
                        esc(fmt_time(a.first_seen)),
                        esc(fmt_time(a.last_seen)),
                    ],
                )
            )
        return _table(
            "Alerts: what the verdicts count",
            [
                ("Severity", "w-sev"),
                ("Device", "w-dev"),
                ("Destination", "w-dest"),
                ("Category", "w-cat"),
                ("Rule", "w-rule"),
                ("Bytes out", "num w-num"),
                ("Flows", "num w-flows"),
                ("First seen", "w-time"),
                ("Last seen", "w-time"),
            ],
            rows,
        )

    def dns_table(self) -> str:
        rows: list[Row] = []
        for lk in self.data.finish_lookups():
            vendor = f"{lk.category} ({lk.vendor})" if lk.category else "-"
            rows.append(
                (
                    "vendor-name" if lk.category else "",
                    [
                        esc(self.device_name(lk.capture, lk.host_ip)),
                        esc(lk.query),
                        esc(lk.qtype),
                        esc(vendor),
                        f"{lk.count:,}",
                        f"{lk.answered:,}",
                        esc(", ".join(sorted(lk.rcodes)) or "-"),
                        esc(", ".join(lk.answers) or "-"),
                        esc(fmt_time(lk.first)),
                    ],
                )
            )
        return _table(
            "DNS lookups, vendor cloud names first",
            [
                ("Device", "w-dev"),
                ("Name", "w-dest"),
                ("Type", "w-type"),
                ("Vendor name", "w-cat"),
                ("Asked", "num w-flows"),
                ("Answered", "num w-flows"),
                ("Answer", "w-code"),
                ("Addresses", ""),
                ("First", "w-time"),
            ],
            rows,
        )

    def attempts_table(self) -> str:
        rows: list[Row] = []
        for at in sorted(self.data.attempts.values(), key=lambda x: (x.capture, x.first, x.dest)):
            lookup = at.kind == "lookup"
            how = "vendor-name lookup" if lookup else f"{at.proto} to port {at.port}"
            rows.append(
                (
                    "",
                    [
                        esc(fmt_time(at.first)),
                        esc(self.device_name(at.capture, at.host_ip)),
                        esc(at.dest) + _sub(at.dest_ip),
                        esc(how),
                        _swatch(at.category),
                        f"{at.count:,}",
                        "-" if lookup else f"{at.answered:,}",
                        _bytes(at.bytes_out),
                    ],
                )
            )
        return _table(
            "Connections off the devices and vendor-name lookups, in order",
            [
                ("First", "w-time"),
                ("Device", "w-dev"),
                ("Destination", "w-dest"),
                ("How", "w-how"),
                ("Category", "w-cat"),
                ("Attempts", "num w-flows"),
                ("Answered", "num w-flows"),
                ("Bytes out", "num w-num"),
            ],
            rows,
        )

    def diff_section(self) -> str:
        d = self.diff
        if d is None:
            return ""
        label = {"only_a": "only in A", "only_b": "only in B", "both": "in both"}
        rows: list[Row] = [
            (
                f"diff-{r.status}",
                [
                    esc(label[r.status]),
                    esc(r.name),
                    _swatch(r.category),
                    esc(r.vendor or "-"),
                    _bytes(r.bytes_out_a),
                    _bytes(r.bytes_out_b),
                    esc(
                        "/".join(x for x in (r.country, f"AS{r.asn}" if r.asn else None) if x)
                        or "-"
                    ),
                ],
            )
            for r in d.rows
        ]
        only_a = sum(1 for r in d.rows if r.status == "only_a")
        only_b = sum(1 for r in d.rows if r.status == "only_b")
        table = _table(
            "Destinations compared",
            [
                ("", "w-state"),
                ("Destination", "w-dest"),
                ("Category", "w-cat"),
                ("Vendor", "w-cat"),
                ("Bytes out A", "num w-num"),
                ("Bytes out B", "num w-num"),
                ("Where", "w-where"),
            ],
            rows,
        )
        return (
            f"<p>A = {esc(d.a)} (judged with local-data mode off)<br>B = {esc(d.b)}</p>"
            f'<p class="lead" id="diff-summary">{only_a} destinations only in A, {only_b} only '
            f"in B, {len(d.rows) - only_a - only_b} in both.</p>"
            f"<p>Vendor cloud names looked up only in A: "
            f"{esc(', '.join(d.names_only_a) or 'none')}.<br>Only in B: "
            f"{esc(', '.join(d.names_only_b) or 'none')}.</p>{table}"
        )

    def provenance(self) -> str:
        p = self.prov
        opts = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in p.options)
        packs: list[Row] = [
            ("", [esc(name), esc(version), f"{rules:,}", esc(path) + _sub(f"sha256 {sha or '-'}")])
            for name, version, path, rules, sha in p.packs
        ]
        dbs: list[Row] = [
            ("", [esc(kind), esc(built), esc(path) + _sub(f"sha256 {sha or '-'}")])
            for kind, built, path, sha in p.geoip
        ]
        caps: list[Row] = [
            ("", [esc(c.path), esc(c.sha256 or "-"), "-" if c.size is None else f"{c.size:,}"])
            for c in self.data.captures
        ]
        note = f'<p class="muted">{esc(p.geoip_note)}</p>' if p.geoip_note else ""
        return (
            f"<p>dronewatch {esc(p.version)}, run as:</p><pre><code>{esc(p.command)}</code></pre>"
            f'<dl class="facts">{opts}</dl>'
            + _table(
                "Rule packs",
                [("Pack", "w-dev"), ("Version", "w-type"), ("Rules", "num w-flows"), ("File", "")],
                packs,
            )
            + _table(
                "GeoIP databases",
                [("Database", "w-dest"), ("Built", "w-time"), ("File", "")],
                dbs,
            )
            + note
            + _table(
                "Capture files",
                [("File", "w-dest"), ("sha256", ""), ("Bytes", "num w-num")],
                caps,
            )
        )

    def body(self) -> str:
        sections = [
            (
                "verdicts",
                "Verdict per device",
                self.verdict_cards(),
                "The verdict records of the run, as analyze writes them to verdicts.jsonl.",
            ),
            ("captures", "Captures and coverage", self.captures_table(), ""),
            ("timeline", "Bytes leaving, by category", self.timeline(), ""),
            ("where", "Where the data went", self.world_map() + self.where_tables(), ""),
            (
                "evidence",
                "Evidence",
                self.evidence_table(),
                "Every destination a device sent bytes to, with the names that identify it.",
            ),
            ("alerts", "Alerts", self.alerts_table(), ""),
            ("dns", "DNS lookups", self.dns_table(), ""),
            ("attempts", "Egress attempts", self.attempts_table(), ""),
        ]
        if self.diff is not None:
            sections.append(
                ("diff", "A against B: what appears in one capture only", self.diff_section(), "")
            )
        sections.append(("reproduce", "Reproduce this result", self.provenance(), ""))
        nav = "".join(
            f'<li><a href="#{key}">{esc(title)}</a></li>' for key, title, _, _ in sections
        )
        html_sections = "".join(
            f'<section id="{key}" aria-labelledby="{key}-title">'
            f'<h2 id="{key}-title">{esc(title)}</h2>'
            + (f'<p class="lead">{esc(lead)}</p>' if lead else "")
            + f"{inner}</section>"
            for key, title, inner, lead in sections
        )
        caps = ", ".join(self.cap_name(i) for i in range(len(self.data.captures)))
        return (
            f'<header class="top"><h1>dronewatch report</h1><p class="tagline">{esc(caps)}</p>'
            '<p class="question">Is data leaving a ground station while its local-data mode is '
            f'on?</p>{self.answer()}<nav aria-label="Sections"><ul>{nav}</ul></nav></header>'
            f"<main>{html_sections}</main>"
            f"<footer>Made by dronewatch {esc(self.prov.version)}. Map: Natural Earth (public "
            "domain) via world-atlas. Chart: uPlot (MIT). GeoIP: IP Geolocation by DB-IP "
            "(db-ip.com), CC BY 4.0.</footer>"
        )

    def timeline(self) -> str:
        return (
            '<div class="chart-tools"><label for="timeline-view">Show</label>'
            '<select id="timeline-view"></select>'
            '<button id="chart-reset" type="button">Reset zoom</button></div>'
            '<p class="hint">Drag across the chart to zoom in, double-click to zoom out. Shaded: '
            "local-data mode on. Click a category in the legend to hide it.</p>"
            '<div id="chart" class="chart" role="img" aria-label="Timeline of bytes leaving">'
            '</div><noscript><p class="muted">The chart needs JavaScript; the totals are '
            "below.</p></noscript>" + self.category_totals()
        )


def render(
    data: ReportCollector,
    provenance: Provenance,
    *,
    diff: DiffPart | None = None,
    ldm_windows: LdmWindows | None = None,
) -> str:
    """The report as one HTML document: no external resource, no request."""
    report = _Report(data, provenance, diff, ldm_windows or (lambda i, h, m: ()))
    body = report.body()
    payload = {
        "timeline": report.timeline_views(),
        "verdicts": [dict(v.to_dict(), capture=i) for i, v in data.verdicts],
    }
    uplot_css = _inline_safe(_asset("dronewatch.api", "web", "vendor", "uPlot.min.css"), "style")
    own_css = _inline_safe(_asset("dronewatch.output", "report_assets", "report.css"), "style")
    scripts = [
        _inline_safe(_asset("dronewatch.api", "web", "vendor", "uPlot.iife.min.js"), "script"),
        _inline_safe(_asset("dronewatch.api", "web", "timeline.js"), "script"),
        _inline_safe(_asset("dronewatch.output", "report_assets", "report.js"), "script"),
    ]
    csp = (
        "default-src 'none'; img-src data:; base-uri 'none'; form-action 'none'; "
        f"style-src {_csp_hash(uplot_css)} {_csp_hash(own_css)}; "
        f"script-src {' '.join(_csp_hash(s) for s in scripts)}"
    )
    parts = {
        "csp": esc(csp),
        "title": esc("dronewatch report: " + ", ".join(c.path for c in data.captures)),
        "uplot_css": uplot_css,
        "report_css": own_css,
        "body": body,
        "data": json_block(payload),
        "uplot_js": scripts[0],
        "timeline_js": scripts[1],
        "report_js": scripts[2],
    }
    template = _asset("dronewatch.output", "report_assets", "report.html")
    # One pass: text put in for one marker is never searched for another.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], template)
