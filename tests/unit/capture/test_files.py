"""Capture file readers: formats, byte orders, resolutions, damage."""

from __future__ import annotations

import gzip
import mmap
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from dronewatch.capture.base import RawPacket
from dronewatch.capture.files import FileSource
from dronewatch.capture.pcapbatch import PcapBatch
from dronewatch.capture.streams import map_file
from tests.pcaps import THIRD_PARTY, all_captures
from tests.unit.capture import captures as cap

FRAME = raw(
    Ether() / IP(src="192.168.1.3", dst="192.168.1.1") / UDP(sport=5556, dport=5556) / b"AT"
)


def read(path: Path) -> tuple[list[tuple[float, int, bytes, int]], FileSource]:
    src = FileSource(str(path))
    pkts = [(p.ts, p.linktype, p.data, p.iface) for p in src.packets()]
    return pkts, src


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_orders_and_resolutions(tmp_path: Path, endian: str, nano: bool) -> None:
    """Both byte orders and micro/nanosecond pcap files give the same times and bytes."""
    f = tmp_path / "a.pcap"
    f.write_bytes(cap.pcap_bytes([(1.5, FRAME), (2.25, FRAME)], endian=endian, nano=nano))
    pkts, src = read(f)
    assert [(p[0], p[1], p[2]) for p in pkts] == [(1.5, 1, FRAME), (2.25, 1, FRAME)]
    assert src.stats.format == "pcap" and src.stats.errors == []


def test_pcapng_interfaces_link_types_and_blocks(tmp_path: Path) -> None:
    """pcapng with two interfaces of different link types, SPB, unknown blocks and drops."""
    ip_only = FRAME[14:]
    data = (
        cap.shb()
        + cap.idb(1)
        + cap.idb(101, tsresol=9)
        + cap.epb(0, 1_000_000, FRAME)
        + cap.unknown_block()
        + cap.epb(1, 2_500_000_000, ip_only)
        + cap.spb(FRAME)
        + cap.isb(0, 7)
    )
    f = tmp_path / "a.pcapng"
    f.write_bytes(data)
    pkts, src = read(f)
    assert [(p[0], p[1], p[3]) for p in pkts] == [(1.0, 1, 0), (2.5, 101, 1), (2.5, 1, 0)]
    assert pkts[1][2] == ip_only
    assert src.stats.drops == 7
    assert src.stats.errors == []


def _items(src: FileSource, batch: bool) -> list[PcapBatch | RawPacket]:
    return list(src.batches() if batch else src.packets())


def _packets(items: list[PcapBatch | RawPacket]) -> list[RawPacket]:
    return [
        p
        for item in items
        for p in ([item] if isinstance(item, RawPacket) else map(item.raw, range(len(item))))
    ]


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_enhanced_packet_blocks_come_in_batches(tmp_path: Path, endian: str) -> None:
    """Runs of enhanced packet blocks of interfaces of one link type come as batches (each
    packet with its interface and its interface's time resolution); a block of an interface of
    another link type, a simple packet block, other blocks and a new section cut the runs; the
    packets, times, counts and drops are those of the per-block reader."""
    ip_only = FRAME[14:]
    blocks = [
        cap.shb(endian),
        cap.idb(1, endian=endian),
        cap.idb(1, tsresol=9, endian=endian),
        cap.idb(101, endian=endian),
    ]
    for i in range(30):
        blocks.append(cap.epb(i % 2, (1_000 + i) * (1000 if i % 2 else 1), FRAME, endian=endian))
    blocks += [
        cap.epb(2, 2_000_000, ip_only, endian=endian, orig=len(ip_only) + 5),
        cap.spb(FRAME, endian),
        cap.epb(0, 3_000_000, FRAME, endian=endian),
        cap.isb(0, 3, endian),
        cap.shb(endian),
        cap.idb(101, endian=endian),
        cap.epb(0, 4_000_000, ip_only, endian=endian),
    ]
    f = tmp_path / "runs.pcapng"
    f.write_bytes(b"".join(blocks))
    per_block, batched = FileSource(str(f)), FileSource(str(f))
    ref, got = _items(per_block, False), _items(batched, True)
    assert _packets(got) == ref and len(ref) == 34
    assert [len(i) if isinstance(i, PcapBatch) else 1 for i in got] == [30, 1, 1, 1, 1]
    assert [p.iface for p in ref[:4]] == [0, 1, 0, 1]
    assert (ref[0].ts, ref[1].ts) == (pytest.approx(0.001), pytest.approx(0.001001))
    assert [p.frame for p in _packets(got)] == list(range(1, 35))
    for a, b in ((per_block.stats, batched.stats),):
        assert (a.packets, a.bytes, a.truncated, a.drops) == (
            b.packets,
            b.bytes,
            b.truncated,
            b.drops,
        )
    assert batched.stats.truncated == 1 and batched.stats.drops == 3


def test_pcapng_damage_inside_a_run_is_reported_as_by_the_per_block_reader(tmp_path: Path) -> None:
    """A run of enhanced packet blocks ending in a block that names an unknown interface or
    whose captured length exceeds it: the batch stops there and the message is the same."""
    good = [cap.epb(0, i, FRAME) for i in range(5)]
    bad_iface = cap.epb(3, 9, FRAME)
    too_long = bytearray(cap.epb(0, 9, FRAME))
    too_long[20:24] = (len(FRAME) + 50).to_bytes(4, "little")
    for bad in (bad_iface, bytes(too_long)):
        f = tmp_path / "bad.pcapng"
        f.write_bytes(cap.shb() + cap.idb(1) + b"".join(good) + bad + cap.epb(0, 10, FRAME))
        per_block, batched = FileSource(str(f)), FileSource(str(f))
        ref, got = _items(per_block, False), _items(batched, True)
        assert _packets(got) == ref and len(ref) == 5
        assert per_block.stats.errors == batched.stats.errors and batched.stats.errors


def test_pcapng_big_endian_section(tmp_path: Path) -> None:
    """A big-endian pcapng section is read with its own byte order."""
    f = tmp_path / "be.pcapng"
    f.write_bytes(cap.shb(">") + cap.idb(1, endian=">") + cap.epb(0, 3_000_000, FRAME, endian=">"))
    pkts, _ = read(f)
    assert pkts == [(3.0, 1, FRAME, 0)]


def test_gzip_compressed(tmp_path: Path) -> None:
    """A gzip-compressed capture is read transparently."""
    f = tmp_path / "a.pcap.gz"
    f.write_bytes(gzip.compress(cap.pcap_bytes([(1.0, FRAME)])))
    pkts, src = read(f)
    assert len(pkts) == 1 and src.stats.format == "pcap-gzip"


def test_stdin_stream(tmp_path: Path) -> None:
    """`dronewatch analyze -` reads a pcap stream from stdin."""
    data = cap.pcap_bytes([(1.0, FRAME), (2.0, FRAME)])
    code = (
        "import sys; from dronewatch.capture.files import FileSource;"
        "s=FileSource('-'); print(sum(1 for _ in s.packets()), s.stats.errors)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input=data, capture_output=True, check=True
    ).stdout
    assert out.decode().strip() == "2 []"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\xa1\xb2", "too short"),
        (b"GET / HTTP/1.1\r\n\r\n", "not a pcap or pcapng file (magic 0x47455420)"),
    ],
)
def test_not_a_capture(tmp_path: Path, content: bytes, message: str) -> None:
    """Empty, tiny and foreign files give one clear message with the offset, no packets."""
    f = tmp_path / "x.pcap"
    f.write_bytes(content)
    pkts, src = read(f)
    assert pkts == []
    assert len(src.stats.errors) == 1
    assert message in src.stats.errors[0] and "byte offset 0" in src.stats.errors[0]
    assert str(f) in src.stats.errors[0]


def test_truncated_pcap_keeps_packets_before_damage(tmp_path: Path) -> None:
    """A pcap cut inside its third packet yields the first two and names the offset."""
    full = cap.pcap_bytes([(1.0, FRAME), (2.0, FRAME), (3.0, FRAME)])
    f = tmp_path / "cut.pcap"
    f.write_bytes(full[:-10])
    pkts, src = read(f)
    assert len(pkts) == 2
    offset = 24 + 2 * (16 + len(FRAME))
    assert src.stats.errors == [
        f"{f} at byte offset {offset}: truncated packet 3: {len(FRAME)} bytes announced, "
        "file ends first"
    ]


def test_truncated_pcapng_block(tmp_path: Path) -> None:
    """A pcapng cut inside a block keeps the packets of the complete blocks."""
    data = cap.shb() + cap.idb(1) + cap.epb(0, 1, FRAME) + cap.epb(0, 2, FRAME)
    f = tmp_path / "cut.pcapng"
    f.write_bytes(data[:-5])
    pkts, src = read(f)
    assert len(pkts) == 1
    assert "truncated block" in src.stats.errors[0]


def test_corrupt_record_length(tmp_path: Path) -> None:
    """An absurd captured length is reported as corruption, not read as a huge packet."""
    data = bytearray(cap.pcap_bytes([(1.0, FRAME), (2.0, FRAME)]))
    second = 24 + 16 + len(FRAME)
    data[second + 8 : second + 12] = (0x7FFFFFFF).to_bytes(4, "little")
    f = tmp_path / "bad.pcap"
    f.write_bytes(bytes(data))
    pkts, src = read(f)
    assert len(pkts) == 1
    assert f"byte offset {second}: corrupt packet record" in src.stats.errors[0]


def test_snaplen_cut_packets_are_counted(tmp_path: Path) -> None:
    """Packets shorter than their wire length are kept and counted as truncated."""
    f = tmp_path / "snap.pcap"
    f.write_bytes(cap.pcap_bytes([(1.0, FRAME[:40])], wirelen=len(FRAME), snaplen=40))
    pkts, src = read(f)
    assert len(pkts) == 1 and src.stats.truncated == 1 and src.stats.errors == []


def test_missing_file_raises_capture_error(tmp_path: Path) -> None:
    """A path that does not exist raises CaptureError naming it."""
    from dronewatch.exceptions import CaptureError

    with pytest.raises(CaptureError, match="nope.pcap"):
        list(FileSource(str(tmp_path / "nope.pcap")).packets())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(tmp_path_factory: pytest.TempPathFactory, blob: bytes) -> None:
    """Any file content ends in packets and/or a recorded error, never an exception."""
    f = tmp_path_factory.mktemp("fuzz") / "f.pcap"
    for head in (b"", cap.pcap_bytes([])[:24], cap.shb() + cap.idb(1)):
        f.write_bytes(head + blob)
        src = FileSource(str(f))
        for _ in src.packets():
            pass


def _read_both(path: Path, batch: bool) -> tuple[list[tuple[float, int, bytes, int]], ...]:
    """What the mapped reader (a regular file we open) and the chunked reader (the same bytes
    from a stream) give: packets, then errors and counts."""
    out = []
    for mapped in (True, False):
        with open(path, "rb") as fh:
            src = FileSource(str(path)) if mapped else FileSource(str(path), stream=fh)
            items = src.batches() if batch else src.packets()
            pkts = []
            for item in items:
                for p in [item] if isinstance(item, RawPacket) else map(item.raw, range(len(item))):
                    pkts.append((p.ts, p.linktype, bytes(p.data), p.wirelen, p.frame))
            stats = src.stats
            out.append((pkts, stats.errors, stats.packets, stats.bytes, stats.truncated))
    return tuple(out)


@pytest.mark.parametrize("batch", [False, True])
def test_mapped_file_reads_as_the_stream_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: bool
) -> None:
    """A regular file is read through memory-mapped windows; with windows far smaller than the
    capture (records cut by a window's end), the packets, counts and damage messages are those of
    the chunked reader, for pcap and pcapng, whole and cut."""
    monkeypatch.setattr("dronewatch.capture.files.CHUNK", 1000)
    frames = [(1.0 + i, FRAME + bytes(i % 300)) for i in range(200)]
    pcap = cap.pcap_bytes(frames)
    pcapng = cap.shb() + cap.idb(1) + b"".join(cap.epb(0, i, f) for i, (_, f) in enumerate(frames))
    for name, data in (("a.pcap", pcap), ("a.pcapng", pcapng)):
        for cut in (0, 7, 5000):
            f = tmp_path / f"{cut}{name}"
            f.write_bytes(data[: len(data) - cut])
            mapped, streamed = _read_both(f, batch)
            assert mapped == streamed
            assert len(mapped[0]) == 200 if cut == 0 else 0 < len(mapped[0]) < 200
            assert bool(mapped[1]) == (cut > 0)


@pytest.mark.parametrize("path", all_captures(THIRD_PARTY), ids=lambda p: p.name)
def test_mapped_shared_captures_read_as_streamed(path: Path) -> None:
    """Every shared capture reads the same mapped as streamed, record by record."""
    for batch in (False, True):
        mapped, streamed = _read_both(path, batch)
        assert mapped == streamed and mapped[0]


def test_mapped_file_that_grows_is_read_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records appended while the file is read (a capture still being written) are read too."""
    monkeypatch.setattr("dronewatch.capture.files.CHUNK", 1000)
    data = cap.pcap_bytes([(1.0 + i, FRAME) for i in range(100)])
    half = 24 + 50 * (16 + len(FRAME))
    f = tmp_path / "growing.pcap"
    f.write_bytes(data[:half])
    packets = FileSource(str(f)).packets()
    first = [next(packets) for _ in range(10)]
    with f.open("ab") as out:
        out.write(data[half:])
    rest = list(packets)
    assert [p.ts for p in first + rest] == [1.0 + i for i in range(100)]


def test_mapped_stream_maps_aligned_windows(tmp_path: Path) -> None:
    """Windows start at the mapping granularity at or before the read position, and `need`
    answers False (the file ends) without losing the bytes still there."""
    f = tmp_path / "x.bin"
    data = bytes(range(256)) * 100
    f.write_bytes(data)
    with f.open("rb") as fh:
        s = map_file(fh, 1000)
        assert s is not None and s.base == 0 and s.remaining() == 1000
        s.pos = 999
        assert s.need(10) and s.base == 0 and s.buf[s.pos] == 999 % 256
        s.pos = s.remaining() + s.pos - 3  # three bytes before the end of the window
        end = s.offset
        assert s.need(2000)
        assert s.offset == end and s.base % mmap.ALLOCATIONGRANULARITY == 0
        while s.need(1000):
            assert s.buf[s.pos : s.pos + 1000] == data[s.offset : s.offset + 1000]
            s.pos += 1000
        assert s.remaining() == len(data) - s.offset < 1000 and s.buf[s.pos :] == data[s.offset :]
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    with empty.open("rb") as fh:
        assert map_file(fh, 1000) is None
