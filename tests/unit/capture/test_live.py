"""Which live backend runs, and the options a live source refuses."""

from __future__ import annotations

import pytest

from dronewatch.capture import live
from dronewatch.capture.live import LiveSource, pick_backend
from dronewatch.exceptions import CaptureError


@pytest.mark.parametrize(
    ("afpacket", "dumpcap", "picked"),
    [(True, True, "afpacket"), (False, True, "dumpcap"), (False, False, "scapy")],
)
def test_default_backend(
    monkeypatch: pytest.MonkeyPatch, afpacket: bool, dumpcap: bool, picked: str
) -> None:
    """The AF_PACKET ring where this process may open AF_PACKET sockets, else dumpcap where it
    is installed (and may hold the capability alone), else scapy."""
    monkeypatch.setattr(live, "can_capture", lambda: afpacket)
    monkeypatch.setattr(live.shutil, "which", lambda name: f"/usr/bin/{name}" if dumpcap else None)
    assert pick_backend(None) == picked
    assert pick_backend(None, "udp port 53") == picked


def test_a_filter_without_tcpdump_goes_to_dumpcap(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ring compiles a capture filter with tcpdump: without it, dumpcap takes the filter."""
    monkeypatch.setattr(live, "can_capture", lambda: True)
    monkeypatch.setattr(
        live.shutil, "which", lambda name: "/usr/bin/dumpcap" if name == "dumpcap" else None
    )
    assert pick_backend(None) == "afpacket"
    assert pick_backend(None, "udp port 53") == "dumpcap"


def test_a_backend_asked_for_is_kept_or_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unknown backend and a missing dumpcap are one-line errors naming what to do."""
    assert pick_backend("scapy") == "scapy"
    with pytest.raises(CaptureError, match="unknown capture backend 'pcap': use afpacket"):
        pick_backend("pcap")
    monkeypatch.setattr(live.shutil, "which", lambda name: None)
    with pytest.raises(CaptureError, match="apt install tshark"):
        pick_backend("dumpcap")


def test_sharing_an_interface_needs_the_ring() -> None:
    """A fanout group with another backend than afpacket is refused."""
    with pytest.raises(CaptureError, match="needs --backend afpacket"):
        LiveSource(["lo"], backend="scapy", fanout_group=7)


def test_the_capture_buffer_has_a_floor() -> None:
    """A kernel buffer under 2 MB is refused before anything opens."""
    with pytest.raises(CaptureError, match="at least 2 MB"):
        LiveSource(["lo"], backend="scapy", buffer_mb=1)
