"""The agent's coverage records carry the analyzer failures, evictions, content gaps and stopped
inspections of their interval."""

from __future__ import annotations

from dataclasses import dataclass, field

from dronewatch.agent.runner import _Coverage
from dronewatch.capture.base import CoverageMark, SourceStats
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import Pipeline


@dataclass
class _Live:
    """The part of a LiveSource that coverage reads."""

    stats: SourceStats = field(default_factory=lambda: SourceStats(name="eth0", format="live"))

    def drops_so_far(self) -> int:
        return 0


def test_interval_records_count_the_failures_since_the_last_one() -> None:
    """Each coverage record has the analyzer failures of its interval only, None when there
    were none, and the final record the rest of the run's."""
    records: list[Record] = []
    pipe = Pipeline(records.append)
    source = _Live()
    coverage = _Coverage("eth0")
    pipe.engine.failures.counts["dns.packet"] += 2
    first = coverage.interval(source, pipe)
    second = coverage.interval(source, pipe)
    pipe.engine.failures.counts["tls.flow_end"] += 1
    pipe.engine.failures.counts["dns.packet"] += 1
    final = pipe.finish(source.stats)
    last = coverage.interval(source, None, final=final.capture)
    assert first.analyzer_errors == {"dns.packet": 2}
    assert second.analyzer_errors is None
    assert final.capture.analyzer_errors == {"dns.packet": 3, "tls.flow_end": 1}
    assert last.analyzer_errors == {"dns.packet": 1, "tls.flow_end": 1}


def test_interval_records_are_cut_at_the_coverage_marks() -> None:
    """A record cut at a mark spans up to the mark's time with the packets and drops counted
    before it; an interval whose drops the source could not tell says None, and the next known
    count is taken from the last one that was known."""
    pipe = Pipeline(lambda record: None)
    source = _Live()
    coverage = _Coverage("eth0")
    coverage.start(100.0)
    marks = [
        CoverageMark(110.0, 50, 5000, 1, 0),
        CoverageMark(120.0, 80, 8000, 1, None),
        CoverageMark(130.0, 90, 9000, 2, 4),
    ]
    got = [coverage.interval(source, pipe, mark=mark) for mark in marks]
    assert [(r.ts, r.last_ts) for r in got] == [(100.0, 110.0), (110.0, 120.0), (120.0, 130.0)]
    assert [r.packets for r in got] == [50, 30, 10]
    assert [r.bytes for r in got] == [5000, 3000, 1000]
    assert [r.truncated for r in got] == [1, 0, 1]
    assert [r.drops for r in got] == [0, None, 4]


def test_interval_records_count_the_flows_evicted_since_the_last_one() -> None:
    """Each coverage record has the flows the full flow table evicted in its interval (None
    when none were), and the last record the rest of the run's: the service sums them."""
    pipe = Pipeline(lambda record: None)
    source = _Live()
    coverage = _Coverage("eth0")
    pipe.engine.evicted_flows = 1_500
    first = coverage.interval(source, pipe)
    second = coverage.interval(source, pipe)
    pipe.engine.evicted_flows = 1_750
    final = pipe.finish(source.stats)
    last = coverage.interval(source, None, final=final.capture)
    assert (first.evicted_flows, second.evicted_flows, last.evicted_flows) == (1_500, None, 250)
    assert final.capture.evicted_flows == 1_750


def test_interval_records_count_what_their_ended_flows_kept_from_view() -> None:
    """Each coverage record has the flows that ended in its interval with content gaps (and
    their bytes) or with their inspection stopped, as the judge counted them; the last record
    the rest of the run's (None when there were none)."""
    pipe = Pipeline(lambda record: None)
    source = _Live()
    coverage = _Coverage("eth0")
    monitor = pipe.monitor
    monitor.gap_flows, monitor.missed_bytes, monitor.stopped_flows = 2, 3_000, 1
    first = coverage.interval(source, pipe)
    second = coverage.interval(source, pipe)
    monitor.gap_flows, monitor.missed_bytes, monitor.stopped_flows = 5, 3_500, 1
    final = pipe.finish(source.stats)
    last = coverage.interval(source, None, final=final.capture)
    got = [(r.gap_flows, r.missed_bytes, r.inspection_stopped) for r in (first, second, last)]
    assert got == [(2, 3_000, 1), (None, None, None), (3, 500, None)]
    assert (final.capture.gap_flows, final.capture.missed_bytes) == (5, 3_500)


def test_interval_records_count_the_encrypted_frames_sent_since_the_last_one() -> None:
    """Each coverage record has the encrypted 802.11 data frames each MAC sent in its interval
    (None when none), and the last record the rest of the run's: the service sums them by MAC."""
    pipe = Pipeline(lambda record: None)
    source = _Live()
    coverage = _Coverage("wlan0mon")
    phone, other = bytes.fromhex("0c84dc000002"), bytes.fromhex("aabbcc000001")
    pipe.decoder.stats.encrypted.update({phone: 10, other: 1})
    first = coverage.interval(source, pipe)
    second = coverage.interval(source, pipe)
    pipe.decoder.stats.encrypted.update({phone: 5})
    final = pipe.finish(source.stats)
    last = coverage.interval(source, None, final=final.capture)
    assert first.encrypted == {"0c:84:dc:00:00:02": 10, "aa:bb:cc:00:00:01": 1}
    assert second.encrypted is None and last.encrypted == {"0c:84:dc:00:00:02": 5}
    assert final.capture.encrypted == {"0c:84:dc:00:00:02": 15, "aa:bb:cc:00:00:01": 1}


def test_a_shared_interfaces_side_channel_names_addresses_as_the_dns_analyzer_does() -> None:
    """A DNS response on the side channel (`SIDE_CHANNEL`, a worker sharing its interface with
    others) teaches this worker's name cache what the DNS analyzer would on the flow
    (`learn_answers`: the asked name, through the CNAME chain); a query, a datagram from another
    port and a wrong checksum teach nothing."""
    from scapy.compat import raw
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    from dronewatch.agent.runner import _NameChannel
    from dronewatch.capture.base import RawPacket
    from dronewatch.capture.live import SIDE_CHANNEL

    answer = DNS(
        id=9,
        qr=1,
        qd=DNSQR(qname="mydjiflight.dji.com"),
        an=[
            DNSRR(rrname="mydjiflight.dji.com", type="CNAME", rdata="edge.cdn.example"),
            DNSRR(rrname="edge.cdn.example", rdata="47.88.0.13"),
        ],
    )
    ip = IP(src="10.77.0.1", dst="10.77.0.2")

    def datagram(sport: int, dns: DNS, chksum: int | None = None) -> RawPacket:
        data = raw(Ether() / ip / UDP(sport=sport, dport=33000, chksum=chksum) / dns)
        return RawPacket(1.0, 1, data, len(data), SIDE_CHANNEL, 1)

    pipe = Pipeline(lambda record: None)
    channel = _NameChannel("verify")
    addr = bytes((47, 88, 0, 13))
    channel.feed(pipe, datagram(53, DNS(id=9, qd=DNSQR(qname="mydjiflight.dji.com"))))
    channel.feed(pipe, datagram(5353, answer))
    channel.feed(pipe, datagram(53, answer, chksum=0x1234))
    assert pipe.ctx.dns.name_for(addr) is None
    channel.feed(pipe, datagram(53, answer))
    assert pipe.ctx.dns.name_for(addr) == "mydjiflight.dji.com"
    # Records in another order: still the asked name (before, the first record's owner).
    reordered = DNS(
        id=10,
        qr=1,
        qd=DNSQR(qname="flysafe-api.dji.com"),
        an=[
            DNSRR(rrname="edge2.cdn.example", rdata="47.88.0.14"),
            DNSRR(rrname="flysafe-api.dji.com", type="CNAME", rdata="edge2.cdn.example"),
        ],
    )
    channel.feed(pipe, datagram(53, reordered))
    assert pipe.ctx.dns.name_for(bytes((47, 88, 0, 14))) == "flysafe-api.dji.com"
