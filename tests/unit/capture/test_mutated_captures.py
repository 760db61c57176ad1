"""Mutation fuzzing of the bundled captures through the capture readers and the whole analyze
pipeline (decoders, analyzers with DRONEWATCH_STRICT_ANALYZERS, the judge), bounded by example
count: bit flips, truncations, insertions, deletions and extreme length fields in real pcap,
pcapng and gzip files. Nothing but a documented `DronewatchError` may escape, and a damaged
capture is reported (its capture record says `complete: false` and why), never silently read.

`test_files.test_arbitrary_bytes_never_raise` feeds random bytes to the readers alone; these
start from real captures so the damage lands in records, blocks and protocol payloads the
analyzers then read.
"""

from __future__ import annotations

import gzip
import struct
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dronewatch.capture.files import FileSource
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, CaptureRecord, run_source
from dronewatch.exceptions import DronewatchError
from dronewatch.geoip.maxmind import MaxMindResolver
from dronewatch.judge.classify import Classifier
from dronewatch.judge.evidence import EvidenceOptions
from dronewatch.judge.policy import Policy
from tests.pcaps import PCAPS, capture

SEEDS = (
    "lab/dns.pcap",
    "lab/http.pcap",
    "lab/tls_sni.pcap",
    "lab/mqtt_v5.pcap",
    "lab/quic_v1.pcap",
    "lab/ipv6_tls.pcap",
    "scenarios/dji_cloud_api_mqtt.pcap",
    "scenarios/dji_fly_ldm_on_clean.pcap",
    "scenarios/hostile_strings.pcap",
    "third_party/zeek/dhcp/dhcp.pcap",
    "third_party/zeek/ipv6-fragmented-dns.pcap",
    "third_party/opendroneid/odid_wifi_bcn_sample.pcap",
    "third_party/mavlink/ipal_MAVLink.pcap",
    "third_party/mavlink/judep90_mavlink_tcp5760.pcapng",
    "lab/tunnels/two_interfaces.pcapng",
    "third_party/wsensing2021/Normal_Establishing_connection_01.pcapng",
    "third_party/zeek/tcp/http-on-irc-port-missing-syn.pcapng",
)
"""Small captures of every link type and most analyzers, in pcap and pcapng."""

EXTREMES = (b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x00\x00\x01\x00")
"""Values written over a 4-byte field (a length, a count, an offset)."""


@cache
def seed(name: str) -> bytes:
    return capture(PCAPS / name).read_bytes()


@cache
def config(bulk: bool) -> AnalysisConfig:
    """`analyze --ldm on --evidence` (bulk or per packet): every analyzer, judge and keeper."""
    return AnalysisConfig(
        policy=Policy().with_ldm(True),
        classifier=Classifier.load(),
        resolver=MaxMindResolver.bundled(),
        evidence=EvidenceOptions(),
        bulk=bulk,
    )


def record_ends(data: bytes) -> list[int] | None:
    """The byte offset where each packet record of a pcap ends (None for other formats)."""
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        return None
    ends, pos = [], 24
    while pos + 16 <= len(data):
        incl = struct.unpack_from(endian + "I", data, pos + 8)[0]
        pos += 16 + incl
        ends.append(pos)
    return ends


def block_ends(data: bytes) -> list[int]:
    """The byte offset where each pcapng block ends."""
    endian = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    ends, pos = [], 0
    while pos + 12 <= len(data):
        pos += struct.unpack_from(endian + "I", data, pos + 4)[0]
        ends.append(pos)
    return ends


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, str, bytes, int | None]:
    """(seed name, what was done, the damaged bytes, the cut offset of a truncation)."""
    name = draw(st.sampled_from(SEEDS))
    data = bytearray(seed(name))
    # Half of the damage lands in the first 64 bytes: file and section headers, first records.
    where = st.one_of(st.integers(0, min(63, len(data) - 1)), st.integers(0, len(data) - 1))
    kind = draw(st.sampled_from(("flip", "truncate", "insert", "delete", "extreme", "mixed")))
    cut = None
    for _ in range(draw(st.integers(1, 4)) if kind == "mixed" else 1):
        step = (
            draw(st.sampled_from(("flip", "insert", "delete", "extreme")))
            if kind == "mixed"
            else kind
        )
        at = draw(where) % max(1, len(data))
        if step == "flip":
            for _ in range(draw(st.integers(1, 8))):
                pos = (at + draw(st.integers(0, 255))) % len(data)
                data[pos] ^= 1 << draw(st.integers(0, 7))
        elif step == "truncate":
            cut = at
            del data[at:]
        elif step == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif step == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            data[at : at + 4] = draw(st.sampled_from(EXTREMES))
    return name, kind, bytes(data), cut


def analyze(path: Path, bulk: bool, mapped: bool) -> tuple[CaptureRecord, list[Record]] | None:
    """Run the pipeline over a damaged file; None when it is refused as unreadable."""
    records: list[Record] = []
    try:
        if mapped:
            run_source(FileSource(str(path)), records.append, config(bulk))
        else:
            with open(path, "rb") as fh:
                run_source(FileSource(str(path), stream=fh), records.append, config(bulk))
    except DronewatchError:  # CaptureError: not a capture at all (documented; exit 2)
        return None
    (cap,) = [r for r in records if isinstance(r, CaptureRecord)]
    return cap, records


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutation=mutations(), bulk=st.booleans(), mapped=st.booleans(), gz=st.booleans())
def test_a_damaged_capture_is_reported_never_raised(
    tmp_path_factory: pytest.TempPathFactory,
    mutation: tuple[str, str, bytes, int | None],
    bulk: bool,
    mapped: bool,
    gz: bool,
) -> None:
    """A mutated capture (plain or gzipped) is analyzed to its end or refused with a
    DronewatchError; its capture record is complete exactly when it names no error; a cut
    inside a record or block is reported as damage, with the records before it kept."""
    name, _kind, data, cut = mutation
    path = tmp_path_factory.mktemp("mutated") / Path(name).name
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    result = analyze(path, bulk, mapped)
    if result is None:
        return
    cap, _records = result
    assert cap.complete == (not cap.errors), (cap.complete, cap.errors)
    if cut is None or cut == 0:
        return
    original = seed(name)
    records = record_ends(original)
    between = [24, *records] if records is not None else block_ends(original)
    if cut in between or cut < 24:
        return  # a cut between records (or in the file header) may leave nothing to notice
    assert not cap.complete and cap.errors, f"{name} cut at {cut} read as complete"
    if records is not None:
        assert cap.packets == sum(1 for end in records if end <= cut)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.sampled_from(SEEDS), data=st.data())
def test_a_truncated_gzip_stream_is_reported(
    tmp_path_factory: pytest.TempPathFactory, name: str, data: st.DataObject
) -> None:
    """A gzip file cut short (its compressed bytes, not the capture inside) is reported as
    damaged, or refused, never read as complete."""
    packed = gzip.compress(seed(name), mtime=0)
    cut = data.draw(st.integers(10, len(packed) - 1))
    path = tmp_path_factory.mktemp("gz") / (Path(name).name + ".gz")
    path.write_bytes(packed[:cut])
    result = analyze(path, True, True)
    if result is not None:
        cap, _ = result
        assert not cap.complete and cap.errors, f"{name}.gz cut at {cut} read as complete"


@pytest.mark.parametrize("name", SEEDS)
def test_every_seed_reads_complete(name: str) -> None:
    """The seeds themselves are read completely, so what the fuzz tests see is their damage."""
    result = analyze(capture(PCAPS / name), True, True)
    assert result is not None and result[0].complete and result[0].packets > 0
