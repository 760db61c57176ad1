"""Ground-station and aircraft discovery from drone links, vendor traffic and MAC prefixes."""

from __future__ import annotations

from dronewatch.core.flow import IP_PROTO_UDP
from dronewatch.judge.devices import DeviceBook, ground_station_side, oui_vendor
from tests.factories import make_flow, make_packet


def link_flow(src: str, sport: int, dst: str, dport: int):  # type: ignore[no-untyped-def]
    return make_flow(
        make_packet(b"x", src=src, sport=sport, dst=dst, dport=dport, proto=IP_PROTO_UDP)
    )


def test_aircraft_address_decides() -> None:
    """The end at a vendor's fixed aircraft address is the aircraft."""
    assert ground_station_side(link_flow("192.168.2.20", 12346, "192.168.2.1", 9003), "dji_wifi")
    assert not ground_station_side(link_flow("192.168.1.1", 5554, "192.168.1.3", 5554), "ardrone")


def test_mavlink_gcs_port_decides() -> None:
    """In MAVLink the end on UDP 14550 is the ground station."""
    f = link_flow("10.0.0.7", 14551, "10.0.0.9", 14550)
    assert ground_station_side(f, "mavlink") is False
    assert ground_station_side(link_flow("10.0.0.9", 14550, "10.0.0.7", 14551), "mavlink")


def test_aircraft_port_decides() -> None:
    """With no fixed address, the end on the aircraft's port is the aircraft."""
    assert ground_station_side(link_flow("10.1.1.5", 40000, "10.1.1.6", 8889), "tello")
    assert ground_station_side(link_flow("10.1.1.5", 40000, "10.1.1.6", 40001), "tello") is None


def test_device_book_roles() -> None:
    """A link marks both ends; vendor traffic and maker MAC prefixes mark ground stations."""
    book = DeviceBook()
    f = link_flow("192.168.2.20", 12346, "192.168.2.1", 9003)
    book.observe_link(f, "dji_wifi")
    book.observe_vendor_traffic("192.168.5.5", b"", "DJI", "dji.flysafe")
    book.host("192.168.5.6", "60:60:1f:aa:bb:cc")
    stations = [h.ip for h in book.ground_stations()]
    assert stations == ["192.168.2.20", "192.168.5.5", "192.168.5.6"]
    assert book.hosts["192.168.2.1"].roles == {"aircraft"}
    assert "dji_wifi link with 192.168.2.1" in book.hosts["192.168.2.20"].reasons


def test_oui_vendor() -> None:
    """Maker MAC prefixes are recognised; others are not."""
    assert oui_vendor("90:03:b7:38:f5:b8") == "Parrot"
    assert oui_vendor("0c:84:dc:d5:5f:4d") is None
    assert oui_vendor(None) is None


def test_link_content_beats_fixed_addresses() -> None:
    """What the link's analyzer read (a MAVLink heartbeat, system 255) wins over the address
    table: a ground station at 192.168.2.1 (DJI's aircraft address) is still the ground station."""
    f = link_flow("192.168.2.2", 45815, "192.168.2.1", 14550)
    f.add_meta("link_gcs_side", "resp")
    assert ground_station_side(f, "mavlink") is False
    g = link_flow("192.168.2.1", 14550, "192.168.2.2", 46561)
    g.add_meta("link_gcs_side", "orig")
    assert ground_station_side(g, "mavlink") is True
