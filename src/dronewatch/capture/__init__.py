"""Capture sources: files (pcap, pcapng, gzip), a pcap stream on stdin, and live interfaces."""

from __future__ import annotations

from dronewatch.capture.base import RawPacket, Source, SourceStats
from dronewatch.capture.decode import Decoder
from dronewatch.capture.files import FileSource, open_source

__all__ = ["Decoder", "FileSource", "RawPacket", "Source", "SourceStats", "open_source"]
