"""Names and addresses of the recorded captures: the DNS zone the lab resolvers answer from.

Cloud services live on documentation addresses (RFC 5737) on the wire; after recording, the
scenario captures map 198.51.100.0/24 -> 47.88.0.0/24 and 203.0.113.0/24 -> 52.84.0.0/24 in the
file (see rewrite.py), so the packets never went to a public address.
"""

from __future__ import annotations

# name -> list of (rdtype, value). A CNAME is followed by the server inside this zone.
ZONE: dict[str, list[tuple[str, str]]] = {
    # DJI (Alibaba Cloud side after the rewrite)
    "flysafe-api.dji.com": [("A", "198.51.100.10"), ("AAAA", "2001:db8:100::10")],
    "account-api.dji.com": [("A", "198.51.100.11")],
    "statistical-report.djiservice.org": [("A", "198.51.100.12")],
    "mydjiflight.dji.com": [("CNAME", "mydjiflight.dji.com.cdn.example")],
    "mydjiflight.dji.com.cdn.example": [("A", "198.51.100.13")],
    "mqtt.fleet.example.org": [("A", "198.51.100.80")],
    # CDN-hosted services (CloudFront side after the rewrite)
    "www.skypixel.com": [("A", "203.0.113.30")],
    "api.mapbox.com": [("A", "203.0.113.40"), ("AAAA", "2001:db8:113::40")],
    "live.example-user-stream.net": [("A", "203.0.113.50")],
    "appcentral.parrot.com": [("A", "203.0.113.60")],
    "academy.parrot.com": [("A", "203.0.113.61")],
    "server.arcgisonline.com": [("A", "203.0.113.70")],
    "firmware.ardupilot.org": [("A", "203.0.113.71")],
    # A made-up destination of scenario hostile_strings (hostile.py)
    "evil.example": [("A", "203.0.113.90")],
}

# Every IPv4 address above is added to the cloud namespace.
CLOUD_ADDRESSES = sorted(
    {v for recs in ZONE.values() for t, v in recs if t == "A"},
    key=lambda a: tuple(int(x) for x in a.split(".")),
)

# Post-recording rewrite of the scenario files (tcprewrite --pnat and the DNS answer fix-up).
PNAT = {"198.51.100.0/24": "47.88.0.0/24", "203.0.113.0/24": "52.84.0.0/24"}

CERT_NAMES = sorted(n for n in ZONE if not n.endswith(".cdn.example"))

DJI_CLIENT_ID = "pilot2-rc-5YSZL9A00100AB"
TOPIC_OSD = "thing/product/1581F5FHD22AB00D0123/osd"
TOPIC_STATUS = "sys/product/5YSZL9A00100AB/status"
TOPIC_SERVICES = "thing/product/5YSZL9A00100AB/services"
TOPIC_EVENTS = "thing/product/5YSZL9A00100AB/events"

UA_DJI_FLY = "DJI Fly/1.13.4 (Android 13; Pixel 7) okhttp/4.9.3"
UA_DJI_PILOT = "DJI Pilot 2/8.1.0 (Android 10; RC Plus) okhttp/4.9.3"
UA_PARROT = "FreeFlight7/7.6.0 (Android 13) GroundSdk/7.6"
UA_QGC = "QGroundControl/4.3.0 (Android)"


def lookup(name: str) -> tuple[list[tuple[str, str, str]], bool]:
    """The answer records (owner, rdtype, value) for NAME, CNAMEs followed, and whether NAME
    exists."""
    name = name.rstrip(".").lower()
    if name not in ZONE:
        return [], False
    out: list[tuple[str, str, str]] = []
    seen = set()
    while name in ZONE and name not in seen:
        seen.add(name)
        recs = ZONE[name]
        cname = [v for t, v in recs if t == "CNAME"]
        if cname:
            out.append((name, "CNAME", cname[0]))
            name = cname[0]
            continue
        out.extend((name, t, v) for t, v in recs)
        break
    return out, True
