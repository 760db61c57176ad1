"""The verdict of one device: nothing left it, a violation, or coverage too thin to say.

One decision for `dronewatch analyze` (over a whole capture) and the alert service (over a time
window of what its agents sent): `decide` takes the device's alerts, what it sent while LDM was off,
and what the capture could see (`Coverage`), and gives the verdict and its sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dronewatch.judge.alert import NOTE_ATTEMPT, NOTE_DNS, NOTE_LEAK, VIOLATION_NOTES

CLEAN = "clean"
VIOLATION = "violation"
INCOMPLETE = "incomplete"
NOT_APPLICABLE = "not_applicable"


@dataclass(frozen=True, slots=True)
class Coverage:
    """What the capture behind a verdict could see."""

    packets: int
    drops: int | None
    """Packets the capture dropped; None when it does not say."""
    complete: bool = True
    """False when a capture was damaged (cut short, corrupt)."""
    captures: int | None = None
    """How many captures the service holds for the window; None for one capture (`analyze`)."""
    gaps: tuple[tuple[float, float], ...] = ()
    """Spans of the window no capture covered."""
    analyzer_errors: int = 0
    """Hook calls of analyzers that failed: what they would have read was not seen."""
    lost_flows: int = 0
    """Flows an agent held open when it stopped (killed): captured, never judged."""
    evicted_flows: int = 0
    """Flows the flow table ended early because it was full (a flood of new flows): what the
    analyzers would have read across the cut may be missed."""
    gap_flows: int = 0
    """The device's TCP flows with content gaps: data its peer acknowledged that the capture
    never showed (packets lost on the way to the capture, not reported as drops). The flows were
    seen and their sizes counted from sequence numbers; what an analyzer would have read in the
    missing bytes was not. Said in the sentence; alone it does not make a verdict incomplete."""
    missed_bytes: int = 0
    """The bytes of those gaps."""
    stopped_flows: int = 0
    """The device's flows whose inspection stopped: every analyzer reading one waited for an
    answer that did not come (`EngineOptions.stall_packets`); the rest of the flow was counted,
    not read. Said in the sentence; it does not make a verdict incomplete."""
    bad_checksums: int = 0
    """Packets dropped unread for a wrong IPv4, TCP, UDP or ICMP checksum (`--checksums auto` or
    `verify`; `dronewatch.capture.checksum`): their receivers dropped them too, so what they
    carried arrived nowhere (data sent again comes in a packet that is read). Said in the
    sentence, so a capture whose checksums the capturing host never filled in (checked with
    `verify`) shows why its own packets are missing; it does not make a verdict incomplete."""
    encrypted_frames: int = 0
    """Protected 802.11 data frames the device sent (a WPA network's, in a monitor-mode
    capture made without the network's key): what they carried cannot be read, so they make a
    verdict incomplete."""
    seen: bool = True
    """Whether the capture shows the device at all (an end of a flow, or the sender of
    encrypted frames): a device the user named that it does not show is not judged clean."""

    @property
    def full(self) -> bool:
        """Whether nothing was missed: no drops, no damage, no gap, no analyzer failure, no
        flow lost with a stopped agent or evicted from a full flow table, no encrypted frame of
        the device, something captured, and the device in it (`seen`)."""
        return (
            self.complete
            and not self.drops
            and not self.gaps
            and not self.analyzer_errors
            and not self.lost_flows
            and not self.evicted_flows
            and not self.encrypted_frames
            and self.captures != 0
            and self.seen
        )

    def describe(self) -> str:
        """The coverage in words, as the verdict's sentence ends."""
        if self.captures is None:
            text = f"{self.packets:,} packets inspected, " + (
                "drops not reported by the capture"
                if self.drops is None
                else f"{self.drops:,} drops"
            )
            if not self.complete:
                text += ", capture damaged"
            return text + self._failures()
        text = f"{self.packets:,} packets in {self.captures} captures, " + (
            "drops not reported" if self.drops is None else f"{self.drops:,} drops"
        )
        if not self.complete:
            text += ", capture damaged"
        if self.gaps:
            missing = sum(b - a for a, b in self.gaps)
            text += f", {len(self.gaps)} coverage gaps ({missing:,.0f} s not captured)"
        if self.lost_flows:
            text += f", {self.lost_flows:,} flows never judged (an agent stopped with them open)"
        return text + self._failures()

    def _failures(self) -> str:
        text = ""
        if self.evicted_flows:
            text += f", {self.evicted_flows:,} flows evicted from a full flow table"
        if self.analyzer_errors:
            text += f", {self.analyzer_errors:,} analyzer failures (inspection incomplete)"
        if self.gap_flows:
            text += ", " + gaps_text(self.gap_flows, self.missed_bytes)
        if self.stopped_flows:
            text += ", " + stopped_text(self.stopped_flows)
        if self.bad_checksums:
            text += ", " + checksums_text(self.bad_checksums)
        if self.encrypted_frames:
            text += ", " + encrypted_text(self.encrypted_frames, "sent by the device ")
        return text


def gaps_text(flows: int, missed_bytes: int) -> str:
    """What content gaps kept from view, as a verdict and the report say it."""
    return (
        f"{flows:,} TCP flows with content gaps ({missed_bytes:,} bytes acknowledged but not "
        "captured)"
    )


def stopped_text(flows: int) -> str:
    """Flows whose inspection stopped, as a verdict and the report say it."""
    return (
        f"inspection stopped on {flows:,} flows (their analyzers waited for an answer that never "
        "came)"
    )


def encrypted_text(frames: int, whose: str = "") -> str:
    """Protected 802.11 data frames nobody could read, as a verdict and the summary say it."""
    return (
        f"{frames:,} encrypted 802.11 data frames {whose}could not be read (a protected network: "
        "decrypt the capture with the network's key first, or capture on the wired side)"
    )


def checksums_text(packets: int) -> str:
    """Packets dropped for a wrong checksum, as a verdict and the report say it."""
    return (
        f"{packets:,} packets with a wrong checksum dropped unread (as their receivers dropped "
        "them)"
    )


@dataclass(frozen=True, slots=True)
class Sent:
    """One alert, or one destination the device sent to with LDM off: what a verdict counts."""

    note: str
    category: str
    dest: str
    bytes_out: int


@dataclass(frozen=True, slots=True)
class Verdict:
    verdict: str
    msg: str
    bytes_out: int
    """Bytes that left while LDM was on (LDM off: in total)."""
    destinations: int
    categories: tuple[str, ...]
    vendor_dns_lookups: int
    attempts: int = 0
    """Destinations the device tried to reach and delivered nothing to (`ldm.egress_attempt`)."""


def decide(
    ldm: bool,
    alerts: Sequence[Sent],
    sent_ldm_off: Sequence[Sent],
    coverage: Coverage,
    allowed_bytes: int = 0,
) -> Verdict:
    """The verdict of a device whose LDM was `ldm` (on at some moment of the span judged), from
    its alerts, what it sent with LDM off, and the coverage."""
    cover = coverage.describe()
    if not ldm:
        total = sum(s.bytes_out for s in sent_ldm_off)
        dests = len({s.dest for s in sent_ldm_off})
        cats = tuple(sorted({s.category for s in sent_ldm_off}))
        msg = (
            f"LDM off: {total:,} bytes to {dests} destinations in {len(cats)} categories ({cover})"
        )
        return Verdict(NOT_APPLICABLE, msg, total, dests, cats, 0)
    violations = [a for a in alerts if a.note in VIOLATION_NOTES]
    tried = sorted({a.dest for a in alerts if a.note == NOTE_ATTEMPT})
    leak = [a for a in violations if a.note == NOTE_LEAK]
    dns = [a for a in violations if a.note == NOTE_DNS]
    out_bytes = sum(a.bytes_out for a in leak)
    cats = tuple(sorted({a.category for a in violations}))
    dests = len({a.dest for a in leak})
    if violations:
        parts = []
        if leak:
            leak_cats = len({a.category for a in leak})
            parts.append(f"{out_bytes:,} bytes to {dests} destinations in {leak_cats} categories")
        if dns:
            parts.append(f"{len(dns)} vendor DNS lookup{'s' if len(dns) != 1 else ''}")
        if tried:
            parts.append(f"attempted to reach {_names(tried)}")
        msg = f"LDM on: {'; '.join(parts)} ({cover})"
        return Verdict(VIOLATION, msg, out_bytes, dests, cats, len(dns), len(tried))
    verdict = CLEAN if coverage.full else INCOMPLETE
    # Frames it sent that nobody could read: what can be said is of what could be read.
    nothing = "nothing readable" if coverage.encrypted_frames else "nothing"
    msg = f"LDM on: {nothing} left the device ({cover})"
    if allowed_bytes:
        msg = (
            f"LDM on: {nothing} left the device outside its exemptions "
            f"({allowed_bytes:,} bytes to allowed destinations; {cover})"
        )
    if tried:
        msg = (
            f"LDM on: attempted to reach {_names(tried)}; nothing was delivered"
            + msg.removeprefix(f"LDM on: {nothing} left the device")
        )
    elif not coverage.seen:
        msg = f"LDM on: the capture shows nothing of the device ({cover})"
    if verdict == INCOMPLETE:
        msg += "; coverage is incomplete, so this is not proof"
    return Verdict(verdict, msg, out_bytes, dests, cats, len(dns), len(tried))


SHOWN_NAMES = 5
"""Destinations a verdict's sentence names before it counts the rest."""


def _names(dests: Sequence[str]) -> str:
    """`a, b, c and 4 more` for a sentence."""
    shown = ", ".join(dests[:SHOWN_NAMES])
    rest = len(dests) - SHOWN_NAMES
    return f"{shown} and {rest} more" if rest > 0 else shown
