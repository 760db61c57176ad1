"""Ground-station and aircraft discovery from drone links, vendor traffic and MAC prefixes."""

from __future__ import annotations

import pickle

from dronewatch.core.flow import IP_PROTO_UDP
from dronewatch.judge.devices import (
    CONFIDENCE_BEHAVIOUR,
    CONFIDENCE_BEHAVIOUR_AP,
    CONFIDENCE_LINK,
    CONFIDENCE_OUI,
    DeviceBook,
    LocalFlow,
    first_address,
    ground_station_side,
    oui_vendor,
)
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
    book.observe_vendor_traffic("192.168.5.5", b"", "DJI", "dji.flysafe", 0.9)
    book.host("192.168.5.6", "60:60:1f:aa:bb:cc")
    stations = [h.ip for h in book.ground_stations()]
    assert stations == ["192.168.2.20", "192.168.5.5", "192.168.5.6"]
    assert book.hosts["192.168.2.1"].roles == {"aircraft"}
    assert "dji_wifi link with 192.168.2.1" in book.hosts["192.168.2.20"].reasons
    assert book.hosts["192.168.2.20"].confidence == CONFIDENCE_LINK
    assert book.hosts["192.168.5.5"].confidence == 0.9
    assert book.hosts["192.168.5.6"].confidence == CONFIDENCE_OUI


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


def stream_flow(src: str, dst: str, **meta: str):  # type: ignore[no-untyped-def]
    f = link_flow(src, 40000, dst, 7070)
    for k, v in meta.items():
        f.add_meta(k, v)
    return f


def test_control_out_and_video_back_make_a_ground_station() -> None:
    """A host that sends a steady control stream to a local address and gets video back from it
    is a ground station, that address its aircraft; either half alone is not enough."""
    book = DeviceBook()
    book.observe_streams(
        stream_flow("192.168.0.20", "192.168.0.1", control_hz="25.0", control_from="orig")
    )
    assert book.ground_stations() == []
    assert "25 Hz control stream to 192.168.0.1, but no video" in book.not_judged(
        book.hosts["192.168.0.20"]
    )
    # The video flow runs the other way: the aircraft is its originator.
    book.observe_streams(
        stream_flow("192.168.0.1", "192.168.0.20", video="h264", video_from="orig")
    )
    (gcs,) = book.ground_stations()
    assert gcs.ip == "192.168.0.20"
    assert gcs.confidence == CONFIDENCE_BEHAVIOUR_AP
    assert "gets h264 video back" in gcs.reasons[0] and "access point" in gcs.reasons[0]
    assert book.hosts["192.168.0.1"].roles == {"aircraft"}
    assert book.not_judged(book.hosts["192.168.0.1"]).startswith("it is an aircraft")


def test_video_to_the_wrong_host_is_not_a_pair() -> None:
    """Control to one host and video from another do not make a ground station; an aircraft
    that is not at a first address gives the lower confidence."""
    book = DeviceBook()
    book.observe_streams(
        stream_flow("10.9.0.7", "10.9.0.5", control_hz="50.0", control_from="orig")
    )
    book.observe_streams(stream_flow("10.9.0.6", "10.9.0.7", video="jpeg", video_from="orig"))
    assert book.ground_stations() == []
    book.observe_streams(stream_flow("10.9.0.7", "10.9.0.5", video="rtp", video_from="resp"))
    (gcs,) = book.ground_stations()
    assert gcs.ip == "10.9.0.7" and gcs.confidence == CONFIDENCE_BEHAVIOUR


def test_rtsp_server_serves_video() -> None:
    """An RTSP session to a local server is video from that server."""
    book = DeviceBook()
    f = stream_flow("192.168.1.20", "192.168.1.1")
    f.service = "rtsp"
    book.observe_streams(f)
    book.observe_streams(
        stream_flow("192.168.1.20", "192.168.1.1", control_hz="20.0", control_from="orig")
    )
    assert [h.ip for h in book.ground_stations()] == ["192.168.1.20"]


def test_local_rule_names_the_ends() -> None:
    """A rule-pack local rule says which end its responder is; the other end is the ground
    station, with the rule's confidence and id as the reason."""
    book = DeviceBook()
    book.observe_local_rule(
        link_flow("192.168.0.20", 5000, "192.168.0.1", 8800), "aircraft", "Acme", "acme.ctl", 0.7
    )
    book.observe_local_rule(
        link_flow("192.168.9.1", 5000, "192.168.9.20", 8801), "ground_station", "B", "b.v", 0.6
    )
    assert [h.ip for h in book.ground_stations()] == ["192.168.0.20", "192.168.9.20"]
    assert book.hosts["192.168.0.20"].reasons == ["Acme link with 192.168.0.1 (acme.ctl)"]
    assert book.hosts["192.168.9.1"].roles == {"aircraft"}


def test_first_address() -> None:
    assert first_address("192.168.0.1") and first_address("172.16.10.1")
    assert not first_address("192.168.0.20") and not first_address("fe80::1")
    assert not first_address("not an address")


def test_local_flow_reads_as_its_flow() -> None:
    """What the monitor keeps of a local or drone-link flow (`LocalFlow`) gives the device book
    what the flow gives it: the same sides, roles and reasons; it carries only the link facts,
    and crosses between processes in a few hundred bytes."""
    flows = [
        link_flow("192.168.2.20", 12346, "192.168.2.1", 9003),
        link_flow("10.0.0.9", 14550, "10.0.0.7", 14551),
        stream_flow("192.168.0.20", "192.168.0.1", control_hz="25.0", control_from="orig"),
        stream_flow("192.168.0.1", "192.168.0.20", video="h264", video_from="orig"),
    ]
    flows[1].add_meta("link_gcs_side", "resp")
    flows[2].add_meta("dns_name", "not read by the book")
    rtsp = stream_flow("192.168.1.20", "192.168.1.1")
    rtsp.service = "rtsp"
    flows.append(rtsp)
    books = DeviceBook(), DeviceBook()
    for flow in flows:
        facts = LocalFlow.of(flow)
        assert "dns_name" not in facts.meta
        assert (facts.orig_h, facts.resp_p) == (flow.orig_h, flow.resp_p)
        for link in ("dji_wifi", "mavlink", "tello"):
            assert ground_station_side(facts, link) == ground_station_side(flow, link)
        for book, seen in zip(books, (flow, facts), strict=True):
            book.observe_link(seen, "mavlink")
            book.observe_local_rule(seen, "aircraft", "Acme", "acme.link", 0.7)
            book.observe_streams(seen)
        assert len(pickle.dumps(facts)) < 400 < len(pickle.dumps(flow))

    def view(book: DeviceBook) -> list[tuple[str, list[str], list[str], float]]:
        return [(h.ip, sorted(h.roles), h.reasons, h.confidence) for h in book.hosts.values()]

    assert view(books[0]) == view(books[1]) and len(view(books[0])) >= 6
