"""Dissect an alert's evidence frames: Wireshark's dissectors through pyshark and tshark when
tshark is installed, otherwise the fields dronewatch's own decoder reads.

Only the few stored frames of a flow are written to a temporary pcap and dissected, on request,
so the cost of tshark is paid per look at an alert, never per packet of the traffic.
"""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import dpkt

from dronewatch.capture.base import RawPacket
from dronewatch.capture.decode import Decoder
from dronewatch.core.flow import ip_str

logger = logging.getLogger(__name__)

MAX_FIELDS = 400
"""Fields kept per layer, so one odd frame cannot make a huge answer."""

TSHARK_TIMEOUT_S = 30.0
"""How long tshark may take over the few frames of one evidence record."""


def _frames(evidence: dict[str, Any]) -> list[tuple[float, bytes, int, int]]:
    out = []
    for f in evidence.get("frames", []):
        try:
            data = base64.b64decode(f["data"], validate=True)
        except (KeyError, ValueError):
            continue
        out.append(
            (
                float(f.get("ts", 0.0)),
                data,
                int(f.get("wirelen", len(data))),
                int(f.get("frame", 0)),
            )
        )
    return out


def dissect(evidence: dict[str, Any], *, use_tshark: bool = True) -> dict[str, Any]:
    """The frames of one evidence record as layers of fields."""
    frames = _frames(evidence)
    linktype = int(evidence.get("linktype", 1))
    if use_tshark and shutil.which("tshark"):
        try:
            return {
                "uid": evidence.get("uid"),
                "dissector": "tshark",
                "frames": _tshark(linktype, frames),
            }
        except Exception as exc:  # tshark missing pieces, odd frames: fall back, say why
            logger.warning("tshark could not dissect evidence of %s: %s", evidence.get("uid"), exc)
    return {"uid": evidence.get("uid"), "dissector": "dronewatch", "frames": _own(linktype, frames)}


def _tshark(linktype: int, frames: list[tuple[float, bytes, int, int]]) -> list[dict[str, Any]]:
    # tshark runs as a plain child process and its PDML is read with pyshark's parser: pyshark's
    # own asyncio process handling loses track of the child when the request runs in a worker
    # thread (it then reports a crash, even from its destructor).
    import lxml.objectify
    from pyshark.tshark.output_parser.tshark_xml import packet_from_xml_packet

    with tempfile.TemporaryDirectory(prefix="dronewatch-evidence-") as tmp:
        path = Path(tmp) / "evidence.pcap"
        with path.open("wb") as fh:
            writer = dpkt.pcap.Writer(fh, snaplen=65535, linktype=linktype)
            for ts, data, _, _ in frames:
                writer.writepkt(data, ts=ts)
        proc = subprocess.run(
            ["tshark", "-n", "-r", str(path), "-T", "pdml"],
            capture_output=True,
            timeout=TSHARK_TIMEOUT_S,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"tshark exited with {proc.returncode}: {_last_line(proc.stderr)}")
    parser = lxml.objectify.makeparser(huge_tree=True, recover=True)
    root = lxml.objectify.fromstring(proc.stdout, parser)
    out = []
    for (ts, _, wirelen, number), xml_pkt in zip(frames, root.findall("packet"), strict=False):
        pkt = packet_from_xml_packet(xml_pkt)
        layers = {}
        for layer in pkt.layers:
            names = [n for n in layer.field_names if n][:MAX_FIELDS]
            layers[layer.layer_name] = {n: str(layer.get_field_value(n)) for n in names}
        out.append({"ts": ts, "frame": number, "wirelen": wirelen, "layers": layers})
    return out


def _last_line(stderr: bytes) -> str:
    lines = [ln for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def _own(linktype: int, frames: list[tuple[float, bytes, int, int]]) -> list[dict[str, Any]]:
    decoder = Decoder("ignore")  # evidence is shown as it was captured
    out = []
    for ts, data, wirelen, number in frames:
        pkt = decoder.decode(RawPacket(ts, linktype, data, wirelen, 0, number))
        layers: dict[str, dict[str, Any]] = {}
        if pkt is not None and pkt.ip_version:
            layers[f"ipv{pkt.ip_version}"] = {
                "src": ip_str(pkt.src),
                "dst": ip_str(pkt.dst),
                "proto": pkt.proto,
                "len": pkt.ip_len,
            }
            if pkt.sport or pkt.dport:
                layers["transport"] = {
                    "sport": pkt.sport,
                    "dport": pkt.dport,
                    "tcp_flags": pkt.tcp_flags,
                    "payload_len": pkt.payload_len,
                }
            if pkt.payload:
                layers["payload"] = {"hex": pkt.payload[:64].hex()}
        out.append({"ts": ts, "frame": number, "wirelen": wirelen, "layers": layers})
    return out
