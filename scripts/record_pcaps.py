#!/usr/bin/env python3
"""Record the project's own test captures from REAL clients and servers talking.

    sudo .venv/bin/python scripts/record_pcaps.py [--only NAME[,NAME...]] [--out pcaps] [--list]

Part 1 (pcaps/lab/*.pcap): one protocol per file, recorded with tcpdump on loopback
(127.0.0.1 / ::1): TLS (Python ssl), QUIC v1/v2 (aioquic), HTTP (http.client/http.server),
DNS (dnspython against a small authoritative server), MQTT 3.1.1/5 (paho + mosquitto),
RTMP and RTSP (ffmpeg against ffmpeg / a small RTSP server), TLS over IPv6. One more,
lab/dji_droneid.pcap, is not recorded but built frame by frame (scripts/_record/droneid.py:
802.11 beacons carrying DJI DroneID), the same bytes on every run.

Part 2 (pcaps/scenarios/*.pcap): a drone ground-station phone in network namespaces this
script creates and deletes (dwphone, dwdrone, dwcloud, joined by veth pairs). The captures are
taken on the phone's two interfaces and merged; the documentation-range cloud addresses are
then rewritten in the FILE (tcprewrite --pnat: 198.51.100.0/24 -> 47.88.0.0/24,
203.0.113.0/24 -> 52.84.0.0/24, plus the A records of the DNS answers). No packet ever leaves
loopback or those namespaces. tello_sdk puts a simulated Tello (scripts/_record/tello.py) in
dwdrone and an SDK app on the phone, and uses no cloud. wifi_toy_drone and wifi_unknown_drone
(scripts/_record/toydrone.py) and wifi_rtsp_drone (scripts/_record/rtspdrone.py: GStreamer's RTSP
server on the aircraft, ffmpeg playing it on the phone) make the aircraft the phone's only
network: dnsmasq in dwdrone serves DHCP and NXDOMAIN, the phone (busybox udhcpc) has no uplink,
and what it sends toward the internet dies at the aircraft. hostile_strings
(scripts/_record/hostile.py) puts hostile text (terminal escapes, CR/LF, NUL, U+2028, bidi
overrides, HTML, CEF separators, very long names) in the phone's DHCP hostname, its DNS query
names, two TLS SNIs and an HTTP Host header.

Must run as root (tcpdump, ip netns, port 53/80/443), except to build only dji_droneid. Needs
the Debian packages tcpdump, tshark (mergecap), mosquitto, tcpreplay (tcprewrite), ffmpeg (with
libx264), ethtool, and the Python packages aioquic, paho-mqtt, dnspython, dpkt, pymavlink,
cryptography in the interpreter that runs it (and dnsmasq-base, udhcpc for the Wi-Fi toy-drone
scenarios; python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-base, -good and -ugly
for wifi_rtsp_drone's aircraft, which runs under the system Python /usr/bin/python3).
Every run re-records everything it is asked for: the bytes change each time (keys, ports,
timestamps), so golden files derived from these captures must be regenerated and reviewed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent / "_record"))

import clients  # noqa: E402
import droneid  # noqa: E402
import rewrite  # noqa: E402
import rtspdrone  # noqa: E402
import util  # noqa: E402
import zone  # noqa: E402
from util import PY, Capture, Procs, log, run  # noqa: E402

NAMESPACES = ("dwphone", "dwdrone", "dwcloud")


@dataclass
class Ctx:
    """What one recording has: its scratch directory, processes, certificate, raw captures."""

    name: str
    workdir: Path
    procs: Procs
    cert: Path
    key: Path
    raw: list[Path] = field(default_factory=list)

    @contextlib.contextmanager
    def capture(self, iface: str, bpf: str = "", netns: str | None = None) -> Iterator[None]:
        """tcpdump on IFACE around the block; the file is flushed and closed on exit."""
        path = self.workdir / f"raw-{netns or 'root'}-{iface}.pcap"
        cap = Capture(self.procs, f"tcpdump-{netns or 'root'}-{iface}", iface, path, bpf, netns)
        cap.start()
        try:
            yield
        finally:
            n = cap.stop()
            log(f"  tcpdump {iface}{' in ' + netns if netns else ''}: {n} packets")
            self.raw.append(path)

    @contextlib.contextmanager
    def captures(self, ifaces: list[str], netns: str) -> Iterator[None]:
        with contextlib.ExitStack() as st:
            for i in ifaces:
                st.enter_context(self.capture(i, netns=netns))
            yield

    def agent(self, name: str, *args: str, netns: str | None = None) -> util.Proc:
        return self.procs.agent(name, args, netns)

    def mosquitto(self, listener: str, netns: str | None = None) -> util.Proc:
        conf = self.workdir / f"mosquitto-{netns or 'root'}.conf"
        conf.write_text(
            f"listener {listener}\nallow_anonymous true\npersistence false\n"
            "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
            "log_type information\nconnection_messages true\n"
        )
        conf.chmod(0o644)
        p = self.procs.start(f"mosquitto-{netns or 'root'}", ["mosquitto", "-c", str(conf)], netns)
        p.wait_for(r"mosquitto version .* running")
        return p

    def rtmp_sink(self, url: str, netns: str | None = None) -> util.Proc:
        """ffmpeg as the RTMP server (listen mode); it ends by itself when the stream ends."""
        p = self.procs.start(
            f"rtmp-sink-{netns or 'root'}",
            [
                "ffmpeg",
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "info",
                "-listen",
                "1",
                "-i",
                url,
                "-c",
                "copy",
                "-f",
                "null",
                "-",
            ],
            netns,
        )
        wait_listen(1935, netns)
        return p


def wait_listen(port: int, netns: str | None = None, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if run(["ss", "-Hltn", f"sport = :{port}"], netns=netns).strip():
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on tcp/{port}")


# --- Part 1: loopback protocol captures -----------------------------------------------------

DJI = "flysafe-api.dji.com"
GEOFENCE = "/api/v2/geofence/areas?lat=22.5431&lng=113.9581&radius=20000"


def lab_tls_sni(c: Ctx) -> None:
    c.agent("https", "http", "127.0.0.1:443", "--cert", str(c.cert), "--key", str(c.key))
    ua = {"User-Agent": zone.UA_DJI_FLY, "Accept": "application/json"}
    with c.capture("lo", "host 127.0.0.1 and tcp port 443"):
        # 1: ordinary connection, ClientHello in one segment, ALPN h2 + http/1.1
        clients.https_session(DJI, "127.0.0.1", [("GET", GEOFENCE, None, ua)])
        time.sleep(0.2)
        # 2: the ClientHello written in three pieces (MemoryBIO, TCP_NODELAY, 50 ms apart)
        clients.tls_split_hello(DJI, "127.0.0.1", "/api/v2/geofence/version", zone.UA_DJI_FLY)
        time.sleep(0.2)
        # 3: five pieces, the first one only 3 bytes (the TLS record header itself is split).
        # (TCP_MAXSEG would not do: loopback carries GSO super-packets, tcpdump sees them whole.)
        clients.tls_split_hello(
            DJI,
            "127.0.0.1",
            "/api/v2/geofence/areas/version?level=2",
            zone.UA_DJI_FLY,
            pieces=(3, 100, 300, 450),
        )


def lab_quic(version: str) -> Callable[[Ctx], None]:
    def rec(c: Ctx) -> None:
        c.agent("quic", "quic", "127.0.0.1:443", "--cert", str(c.cert), "--key", str(c.key))
        with c.capture("lo", "host 127.0.0.1 and udp port 443"):
            clients.quic_get(
                "api.mapbox.com",
                "127.0.0.1",
                ["/v4/mapbox.satellite/16/53540/28540@2x.webp?access_token=pk.lab"],
                version,
            )

    return rec


def lab_http(c: Ctx) -> None:
    c.agent("http", "http", "127.0.0.1:80")
    host = "statistical-report.djiservice.org"
    hdrs = {"User-Agent": zone.UA_DJI_FLY, "Accept": "application/json"}
    body = (
        b'{"app":"dji_fly","version":"1.13.4","os":"Android 13","model":"Pixel 7",'
        b'"aircraft":"DJI Mini 4 Pro","events":[{"id":"home_page_show","t":1718000000}]}'
    )
    with c.capture("lo", "host 127.0.0.1 and tcp port 80"):
        clients.http_session(
            "127.0.0.1",
            host,
            [
                ("GET", "/api/report/config?app=dji_fly", None, hdrs),
                (
                    "POST",
                    "/api/report/clientContext",
                    body,
                    {**hdrs, "Content-Type": "application/json"},
                ),
            ],
        )


def lab_dns(c: Ctx) -> None:
    c.agent("dns", "dns", "127.0.0.1:53")
    with c.capture("lo", "host 127.0.0.1 and port 53"):
        clients.resolve("127.0.0.1", DJI, "A")
        clients.resolve("127.0.0.1", DJI, "AAAA")
        clients.resolve("127.0.0.1", "mydjiflight.dji.com", "A")
        clients.resolve("127.0.0.1", "no-such-host.dji.com", "A")
        clients.resolve_tcp("127.0.0.1", "api.mapbox.com", "A")


def lab_mqtt(version: int) -> Callable[[Ctx], None]:
    def rec(c: Ctx) -> None:
        c.mosquitto("1883 127.0.0.1")
        with c.capture("lo", "host 127.0.0.1 and tcp port 1883"):
            clients.mqtt_session(
                "127.0.0.1",
                1883,
                version,
                osd_count=4,
                status=True,
                events=False,
                on_subscribed=lambda: clients.mqtt_cloud_publish("127.0.0.1", 1883, version),
                wait_message=5.0,
            )

    return rec


def lab_rtmp(c: Ctx) -> None:
    sink = c.rtmp_sink("rtmp://127.0.0.1:1935/live/dronestream")
    with c.capture("lo", "host 127.0.0.1 and tcp port 1935"):
        clients.rtmp_publish("127.0.0.1", "live", "dronestream", None, secs=3)
        sink.wait(20)


def lab_rtsp(c: Ctx) -> None:
    c.agent("rtsp", "rtsp", "127.0.0.1:8554")
    with c.capture("lo", "host 127.0.0.1 and tcp port 8554"):
        # ANNOUNCE/SETUP/RECORD: ffmpeg pushes 2 s of MPEG-4 video interleaved over TCP
        clients.ffmpeg(
            [
                *clients.TESTSRC,
                "-t",
                "2",
                "-an",
                "-c:v",
                "mpeg4",
                "-b:v",
                "64k",
                "-f",
                "rtsp",
                "-rtsp_transport",
                "tcp",
                "rtsp://127.0.0.1:8554/push",
            ]
        )
        time.sleep(0.3)
        # OPTIONS/DESCRIBE/SETUP/PLAY/TEARDOWN: ffmpeg plays 1 s of it back
        clients.ffmpeg(
            [
                "-rtsp_transport",
                "tcp",
                "-i",
                "rtsp://127.0.0.1:8554/live",
                "-t",
                "1",
                "-f",
                "null",
                "-",
            ]
        )


def lab_ipv6_tls(c: Ctx) -> None:
    c.agent("https6", "http", "[::1]:443", "--cert", str(c.cert), "--key", str(c.key))
    with c.capture("lo", "ip6 and host ::1 and tcp port 443"):
        clients.https_session(
            "api.mapbox.com",
            "::1",
            [
                (
                    "GET",
                    "/styles/v1/mapbox/satellite-streets-v12?access_token=pk.lab",
                    None,
                    {"User-Agent": zone.UA_DJI_FLY, "Accept": "application/json"},
                ),
            ],
        )


LAB: dict[str, Callable[[Ctx], None]] = {
    "tls_sni": lab_tls_sni,
    "quic_v1": lab_quic("v1"),
    "quic_v2": lab_quic("v2"),
    "http": lab_http,
    "dns": lab_dns,
    "mqtt_v311": lab_mqtt(4),
    "mqtt_v5": lab_mqtt(5),
    "rtmp": lab_rtmp,
    "rtsp": lab_rtsp,
    "ipv6_tls": lab_ipv6_tls,
}

CRAFTED: dict[str, Callable[[Path], int]] = {"dji_droneid": droneid.write}
"""Captures built frame by frame from a published layout, not recorded (no root needed): DJI
DroneID beacons (scripts/_record/droneid.py), as no public capture of them could be used."""


# --- Part 2: scenario captures in namespaces ------------------------------------------------

MAC_PHONE_WLAN = "ae:3f:52:8c:02:14"
MAC_PHONE_UPLINK = "ae:3f:52:8c:77:02"
MAC_RC_UPLINK = "34:d2:62:4e:00:01"  # a DJI smart controller (DJI OUI)
MAC_CLOUD = "ae:3f:52:8c:77:01"
MAC_DJI_AIRCRAFT = "60:60:1f:3c:9a:01"  # DJI OUI
MAC_PARROT = "90:3a:e6:5b:21:07"  # Parrot OUI
MAC_VEHICLE = "ae:3f:52:8c:14:01"
MAC_TELLO = "60:60:1f:c3:5a:17"  # DJI OUI
MAC_TOY = "ae:3f:52:8c:69:01"  # a made-up, locally administered MAC (toy camera boards vary)
MAC_UNKNOWN = "ae:3f:52:8c:10:01"
MAC_RTSP = "ae:3f:52:8c:55:01"


@dataclass(frozen=True)
class Scenario:
    wifi: str = "192.168.2"  # the aircraft's Wi-Fi /24
    phone: int = 20
    drone: int = 1
    drone_mac: str = MAC_DJI_AIRCRAFT
    uplink_mac: str = MAC_PHONE_UPLINK
    drone_role: tuple[str, ...] = ()  # agent role run in dwdrone before the capture
    cloud: frozenset[str] = frozenset({"dns", "https"})
    secs: float = 60.0  # the phone's time limit
    uplink: bool = True  # False: the aircraft is the phone's only network (no rmnet0, no cloud)
    dhcp: str | None = None  # dnsmasq --dhcp-range in dwdrone; the phone then runs udhcpc


SCENARIOS: dict[str, Scenario] = {
    "dji_fly_ldm_off": Scenario(
        drone_role=("duml", "192.168.2.1:9003"),
        cloud=frozenset({"dns", "https", "http", "quic", "rtmp"}),
    ),
    "dji_fly_ldm_on_clean": Scenario(drone_role=("duml", "192.168.2.1:9003"), cloud=frozenset()),
    "dji_fly_ldm_on_violation": Scenario(drone_role=("duml", "192.168.2.1:9003")),
    "dji_fly_ldm_on_maps_only": Scenario(drone_role=("duml", "192.168.2.1:9003")),
    "parrot_freeflight": Scenario(
        wifi="192.168.42", phone=10, drone_mac=MAC_PARROT, drone_role=("arsdk", "192.168.42.1")
    ),
    "qgc_mavlink": Scenario(drone_mac=MAC_VEHICLE),
    "dji_cloud_api_mqtt": Scenario(uplink_mac=MAC_RC_UPLINK, cloud=frozenset({"dns", "mqtt"})),
    "tello_sdk": Scenario(
        wifi="192.168.10",
        phone=2,
        drone_mac=MAC_TELLO,
        drone_role=("tello", "192.168.10.1"),
        cloud=frozenset(),
    ),
    # Cheap Wi-Fi camera drones: the aircraft is the access point and serves DHCP and a DNS
    # that answers NXDOMAIN to everything (dnsmasq); no uplink. scripts/_record/toydrone.py.
    "wifi_toy_drone": Scenario(
        wifi="192.168.169",
        phone=0,
        drone_mac=MAC_TOY,
        drone_role=("toydrone", "wifi_uav", "192.168.169.1"),
        cloud=frozenset(),
        uplink=False,
        dhcp="192.168.169.2,192.168.169.20,255.255.255.0,1h",
    ),
    "wifi_unknown_drone": Scenario(
        wifi="172.16.10",
        phone=0,
        drone_mac=MAC_UNKNOWN,
        drone_role=("toydrone", "unknown", "172.16.10.1"),
        cloud=frozenset(),
        uplink=False,
        dhcp="172.16.10.100,172.16.10.150,255.255.255.0,1h",
    ),
    "wifi_rtsp_drone": Scenario(
        wifi="172.16.10",
        phone=0,
        drone_mac=MAC_RTSP,
        drone_role=("toydrone", "rtsp", "172.16.10.1"),
        cloud=frozenset(),
        uplink=False,
        dhcp="172.16.10.2,172.16.10.20,255.255.255.0,1h",
    ),
    # Hostile text in every wire field dronewatch shows (scripts/_record/hostile.py): the
    # aircraft serves DHCP (the phone's hostname), the cloud DNS, HTTPS and HTTP.
    "hostile_strings": Scenario(
        drone_role=("duml", "192.168.2.1:9003"),
        cloud=frozenset({"dns", "https", "http"}),
        dhcp="192.168.2.20,192.168.2.20,255.255.255.0,1h",
    ),
}


BRIDGES = ("dwbrwifi", "dwbrup")
"""Root-namespace bridges of the mirrored topology: the drone Wi-Fi, the uplink."""


def topology_down() -> None:
    for ns in NAMESPACES:
        util.netns_delete(ns)
    for bridge in BRIDGES:
        run(["ip", "link", "del", bridge], check=False)


def topology_up(sc: Scenario, mirrored: bool = False) -> None:
    """dwphone: wlan0 <-> dwdrone ap0 (the aircraft's Wi-Fi), rmnet0 <-> dwcloud eth0 (the
    uplink; dwcloud is the router and holds every cloud address). Only the documentation
    ranges are routed, via 10.77.0.1: there is no default route anywhere.

    `mirrored`: each link goes through a bridge in the root namespace (BRIDGES) instead of a
    direct veth pair, so a capture on the host sees all of it (the live agent's tests)."""
    topology_down()
    for ns in NAMESPACES:
        util.netns_create(ns)
    if mirrored:
        util.veth_to_bridge("dwphone", "wlan0", MAC_PHONE_WLAN, "dwpwifi", BRIDGES[0])
        util.veth_to_bridge("dwdrone", "ap0", sc.drone_mac, "dwdwifi", BRIDGES[0])
        if sc.uplink:
            util.veth_to_bridge("dwphone", "rmnet0", sc.uplink_mac, "dwpup", BRIDGES[1])
            util.veth_to_bridge("dwcloud", "eth0", MAC_CLOUD, "dwcup", BRIDGES[1])
    else:
        util.veth("dwphone", "wlan0", MAC_PHONE_WLAN, "dwdrone", "ap0", sc.drone_mac)
        if sc.uplink:
            util.veth("dwphone", "rmnet0", sc.uplink_mac, "dwcloud", "eth0", MAC_CLOUD)
    if not sc.dhcp:  # with DHCP the phone gets its address (and default route) itself
        util.addr("dwphone", "wlan0", f"{sc.wifi}.{sc.phone}/24")
    util.addr("dwdrone", "ap0", f"{sc.wifi}.{sc.drone}/24")
    if not sc.uplink:  # dwcloud stays empty: nothing is routed beyond the aircraft
        return
    util.addr("dwphone", "rmnet0", "10.77.0.2/24")
    util.addr("dwcloud", "eth0", "10.77.0.1/24")
    for a in zone.CLOUD_ADDRESSES:
        util.addr("dwcloud", "eth0", f"{a}/32")
    for net in zone.PNAT:
        util.route("dwphone", net, "10.77.0.1")


def cloud_up(c: Ctx, sc: Scenario) -> None:
    cert, key = str(c.cert), str(c.key)
    if "dns" in sc.cloud:
        c.agent("dns", "dns", "10.77.0.1:53", netns="dwcloud")
    if "https" in sc.cloud:
        c.agent("https", "http", "0.0.0.0:443", "--cert", cert, "--key", key, netns="dwcloud")
    if "http" in sc.cloud:
        c.agent("http", "http", "0.0.0.0:80", netns="dwcloud")
    if "quic" in sc.cloud:
        binds = [f"{a}:443" for a in zone.CLOUD_ADDRESSES]
        c.agent("quic", "quic", *binds, "--cert", cert, "--key", key, netns="dwcloud")
    if "mqtt" in sc.cloud:
        c.mosquitto("1883", netns="dwcloud")
    if "rtmp" in sc.cloud:
        c.rtmp_sink("rtmp://0.0.0.0:1935/live/abc", netns="dwcloud")


def record_scenario(name: str, c: Ctx) -> None:
    sc = stage_scenario(name, c)
    with c.captures(["wlan0", "rmnet0"] if sc.uplink else ["wlan0"], netns="dwphone"):
        play_scenario(name, c, sc)


def access_point_services(c: Ctx, sc: Scenario) -> None:
    """dnsmasq on the aircraft: DHCP (router and DNS = the aircraft) and a DNS server that
    answers NXDOMAIN to every name (`address=/#/`, no upstream), as a toy drone's AP does."""
    me = f"{sc.wifi}.{sc.drone}"
    p = c.procs.start(
        "dnsmasq-dwdrone",
        [
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--interface=ap0",
            "--bind-interfaces",
            "--user=root",
            f"--dhcp-range={sc.dhcp}",
            f"--dhcp-option=option:router,{me}",
            f"--dhcp-option=option:dns-server,{me}",
            "--address=/#/",
            f"--dhcp-leasefile={c.workdir / 'dnsmasq.leases'}",
            f"--pid-file={c.workdir / 'dnsmasq.pid'}",
            "--log-facility=-",
            "--log-queries",
            "--log-dhcp",
        ],  # fmt: skip
        "dwdrone",
    )
    p.wait_for(r"DHCP, IP range")


def stage_scenario(name: str, c: Ctx, mirrored: bool = False) -> Scenario:
    """The scenario's namespaces, cloud servers and aircraft, up and waiting for the phone."""
    sc = SCENARIOS[name]
    topology_up(sc, mirrored)
    cloud_up(c, sc)
    if sc.dhcp:
        access_point_services(c, sc)
    if sc.drone_role:
        c.agent("drone", *sc.drone_role, netns="dwdrone")
    return sc


def play_scenario(name: str, c: Ctx, sc: Scenario) -> None:
    """Run the phone's program (the real clients) to its end; raise if it failed."""
    phone = c.procs.start("phone", [PY, "-u", str(util.AGENT), "phone", name], "dwphone")
    if name == "qgc_mavlink":
        phone.wait_for("GCS LISTENING")
        c.agent(
            "vehicle",
            "vehicle",
            "192.168.2.1:14555",
            f"{sc.wifi}.{sc.phone}:14550",
            "--secs",
            "6",
            netns="dwdrone",
        )
    if name == "dji_cloud_api_mqtt":
        phone.wait_for("SUBSCRIBED")
        run(
            [
                "mosquitto_pub",
                "-h",
                "127.0.0.1",
                "-V",
                "mqttv5",
                "-q",
                "1",
                "-i",
                "fleet-server-01",
                "-t",
                zone.TOPIC_SERVICES,
                "-m",
                '{"tid":"9c1f0b2e","bid":"77aa0c3d","method":"flighttask_prepare",'
                '"data":{"flight_id":"lab-0001"}}',
            ],
            netns="dwcloud",
        )
    rc = phone.wait(sc.secs)
    if rc != 0 or "PHONE DONE" not in phone.output():
        raise RuntimeError(f"phone program failed ({rc}):\n{phone.output()[-3000:]}")


# --- driver -----------------------------------------------------------------------------------


def finish(c: Ctx, dest: Path, scenario: bool) -> Path:
    """Post-process the raw capture(s) of C into DEST (written atomically)."""
    tmp = c.workdir / "final.pcap"
    if scenario:
        merged, dnsfixed = c.workdir / "merged.pcap", c.workdir / "dnsfixed.pcap"
        rewrite.merge(c.raw, merged)
        n = rewrite.dns_answers(merged, dnsfixed, zone.PNAT)
        log(f"  rewrote {n} DNS A records, then tcprewrite --pnat --fixcsum")
        rewrite.pnat(dnsfixed, tmp, zone.PNAT)
    else:
        (raw,) = c.raw
        rewrite.fixcsum(raw, tmp)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp, dest.with_suffix(".pcap.tmp"))
    os.replace(dest.with_suffix(".pcap.tmp"), dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--only",
        help="comma-separated capture names (e.g. tls_sni,qgc_mavlink), or 'lab' / 'scenarios'",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "pcaps", help="output root (default pcaps)")
    ap.add_argument("--list", action="store_true", help="list the capture names and exit")
    ap.add_argument("--keep-work", action="store_true", help="keep the scratch directory")
    a = ap.parse_args(argv)

    todo = [("lab", n) for n in [*LAB, *CRAFTED]] + [("scenarios", n) for n in SCENARIOS]
    if a.list:
        for part, n in todo:
            print(f"{part}/{n}")
        return 0
    if a.only:
        want = {w.strip().removesuffix(".pcap") for w in a.only.split(",") if w.strip()}
        unknown = want - {n for _, n in todo} - {"lab", "scenarios"}
        if unknown:
            ap.error(f"unknown capture(s): {', '.join(sorted(unknown))} (see --list)")
        todo = [(p, n) for p, n in todo if n in want or p in want]
    written: list[Path] = []
    for part, name in [(p, n) for p, n in todo if n in CRAFTED]:
        dest = a.out / part / f"{name}.pcap"
        dest.parent.mkdir(parents=True, exist_ok=True)
        log(f"building {part}/{name}.pcap")
        CRAFTED[name](dest)
        written.append(dest)
    todo = [(p, n) for p, n in todo if n not in CRAFTED]
    if todo and os.geteuid() != 0:
        ap.error("must run as root (tcpdump, ip netns, ports below 1024)")
    if not todo:
        return report(written, [])
    if any(SCENARIOS[n].dhcp for p, n in todo if p == "scenarios"):
        util.require_tools(["dnsmasq", "udhcpc"])
    if ("scenarios", "wifi_rtsp_drone") in todo and (missing := rtspdrone.server_missing()):
        ap.error(f"wifi_rtsp_drone needs {missing}")
    util.require_tools(
        [
            "tcpdump",
            "mergecap",
            "tcprewrite",
            "mosquitto",
            "mosquitto_pub",
            "ffmpeg",
            "ethtool",
            "ip",
            "ss",
        ]
    )

    # SIGTERM/SIGHUP unwind through the finally blocks like Ctrl-C does.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))

    top = Path(tempfile.mkdtemp(prefix="dronewatch-record-"))
    failed: list[str] = []
    try:
        cert, key = util.make_cert(top, zone.CERT_NAMES)
        os.chmod(top, 0o755)
        for part, name in todo:
            wd = top / name
            wd.mkdir()
            procs = Procs(wd)
            c = Ctx(name, wd, procs, cert, key)
            log(f"recording {part}/{name}.pcap")
            try:
                if part == "lab":
                    LAB[name](c)
                else:
                    record_scenario(name, c)
                procs.stop_all()
                written.append(finish(c, a.out / part / f"{name}.pcap", part == "scenarios"))
            except Exception as exc:
                failed.append(name)
                log(f"FAILED {name}: {exc}")
                for p in procs.procs:
                    log(f"  ({p.name} log: {p.logpath})")
                a.keep_work = True
            finally:
                procs.stop_all()
                if part == "scenarios":
                    topology_down()
    finally:
        topology_down()
        if a.keep_work:
            log(f"scratch kept in {top}")
        else:
            shutil.rmtree(top, ignore_errors=True)

    return report(written, failed)


def report(written: list[Path], failed: list[str]) -> int:
    """Print what was written and what failed; the exit status."""
    for p in written:
        shown = p.relative_to(ROOT) if p.is_relative_to(ROOT) else p
        print(f"wrote {shown} ({rewrite.count(p)} packets, {p.stat().st_size} bytes)")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
