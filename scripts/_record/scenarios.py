"""What the simulated phone does in each scenario (runs inside namespace dwphone).

The phone resolves every service name with dnspython at the router's DNS server (10.77.0.1, run in
namespace dwcloud) and then talks to the address it got, with real clients.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable

import zone
from clients import (
    arsdk_controller,
    duml_link,
    http_session,
    https_session,
    mavlink_gcs,
    mqtt_session,
    parrot_discovery,
    quic_get,
    resolve,
    rtmp_publish,
    say,
)
from hostile import hostile_phone
from rtspdrone import rtsp_app
from tello import sdk_session
from toydrone import toy_phone, unknown_app, wifi_uav_app

DNS = "10.77.0.1"
DJI_AIRCRAFT = "192.168.2.1"
PARROT_DRONE = "192.168.42.1"
TELLO = "192.168.10.1"


def ip_of(name: str) -> str:
    addrs = [a for a in resolve(DNS, name, "A") if a[0].isdigit()]
    if not addrs:
        raise RuntimeError(f"{name} did not resolve")
    return addrs[0]


def blob(n: int, seed: int) -> bytes:
    """Incompressible upload body (like a video or a zipped log)."""
    return random.Random(seed).randbytes(n)


def with_duml_link(before: float, after: float, body: Callable[[], None] | None = None) -> None:
    stop = threading.Event()
    t = threading.Thread(target=duml_link, args=(DJI_AIRCRAFT, stop), daemon=True)
    t.start()
    try:
        time.sleep(before)
        if body:
            body()
        time.sleep(after)
    finally:
        stop.set()
        t.join(5)


def dji_ua() -> dict[str, str]:
    return {"User-Agent": zone.UA_DJI_FLY, "Accept": "application/json"}


def mapbox_tiles() -> list[str]:
    tok = "access_token=pk.eyJ1IjoiZHJvbmV3YXRjaC1sYWIiLCJhIjoibGFiIn0.bGFi"
    return [f"/v4/mapbox.satellite/16/{53540 + i}/{28540 + i}@2x.webp?{tok}" for i in range(3)]


def dji_fly_ldm_off() -> None:
    def cloud() -> None:
        name = "flysafe-api.dji.com"
        https_session(
            name,
            ip_of(name),
            [
                (
                    "GET",
                    "/api/v2/geofence/areas?lat=22.5431&lng=113.9581&radius=20000&country=CN",
                    None,
                    dji_ua(),
                ),
            ],
        )
        name = "account-api.dji.com"
        body = b'{"appId":"dji_fly","refresh_token":"lab-refresh-token","device":"Pixel 7"}'
        https_session(
            name,
            ip_of(name),
            [
                (
                    "POST",
                    "/apis/apprest/v1/user/token_refresh",
                    body,
                    {**dji_ua(), "Content-Type": "application/json"},
                ),
            ],
        )
        name = "statistical-report.djiservice.org"
        report = (
            b'{"app":"dji_fly","version":"1.13.4","os":"Android 13","model":"Pixel 7",'
            b'"events":[{"id":"home_page_show","t":1718000000}]}'
        )
        http_session(
            ip_of(name),
            name,
            [
                (
                    "POST",
                    "/api/report/clientContext",
                    report,
                    {"User-Agent": zone.UA_DJI_FLY, "Content-Type": "application/json"},
                ),
            ],
        )
        name = "api.mapbox.com"
        quic_get(name, ip_of(name), mapbox_tiles()[:2], "v1", ua=zone.UA_DJI_FLY)
        name = "www.skypixel.com"
        https_session(
            name,
            ip_of(name),
            [
                (
                    "POST",
                    "/api/v2/works/upload?type=video",
                    blob(2_000_000, 1),
                    {"User-Agent": zone.UA_DJI_FLY, "Content-Type": "video/mp4"},
                ),
            ],
        )
        name = "live.example-user-stream.net"
        rtmp_publish(ip_of(name), "live", "abc", tcurl=f"rtmp://{name}/live", secs=3)

    with_duml_link(1.0, 1.0, cloud)


def dji_fly_ldm_on_clean() -> None:
    with_duml_link(10.0, 0.0)


def dji_fly_ldm_on_violation() -> None:
    def sync() -> None:
        name = "mydjiflight.dji.com"
        https_session(
            name,
            ip_of(name),
            [
                (
                    "POST",
                    "/api/v2/flight_log/zipupload",
                    blob(500_000, 3),
                    {"User-Agent": zone.UA_DJI_FLY, "Content-Type": "application/zip"},
                ),
            ],
        )

    with_duml_link(3.0, 3.0, sync)


def dji_fly_ldm_on_maps_only() -> None:
    def maps() -> None:
        name = "api.mapbox.com"
        https_session(
            name,
            ip_of(name),
            [
                ("GET", p, None, {"User-Agent": zone.UA_DJI_FLY, "Accept": "image/webp"})
                for p in mapbox_tiles()
            ],
        )

    with_duml_link(2.0, 3.0, maps)


def parrot_freeflight() -> None:
    c2d = parrot_discovery(PARROT_DRONE)
    t = threading.Thread(target=arsdk_controller, args=(PARROT_DRONE, c2d, 7.0), daemon=True)
    t.start()
    time.sleep(1.5)
    ua = {"User-Agent": zone.UA_PARROT, "Accept": "application/json"}
    name = "appcentral.parrot.com"
    https_session(
        name,
        ip_of(name),
        [
            ("GET", "/apiv1/update?product=091e&version=7.6.0&platform=android", None, ua),
        ],
    )
    name = "academy.parrot.com"
    https_session(
        name,
        ip_of(name),
        [
            ("GET", "/apiv1/runs?limit=20", None, ua),
            ("POST", "/apiv1/runs", blob(60_000, 5), {**ua, "Content-Type": "application/zip"}),
        ],
    )
    t.join(15)


def qgc_mavlink() -> None:
    t = threading.Thread(target=mavlink_gcs, args=(8.0,), daemon=True)
    t.start()
    time.sleep(1.5)
    ua = {"User-Agent": zone.UA_QGC}
    name = "server.arcgisonline.com"
    https_session(
        name,
        ip_of(name),
        [
            (
                "GET",
                f"/ArcGIS/rest/services/World_Imagery/MapServer/tile/17/{45820 + i}/{68650 + i}",
                None,
                ua,
            )
            for i in range(3)
        ],
    )
    name = "firmware.ardupilot.org"
    https_session(name, ip_of(name), [("GET", "/manifest.json", None, ua)])
    t.join(15)


def tello_sdk() -> None:
    sdk_session(TELLO)


def dji_cloud_api_mqtt() -> None:
    ip = ip_of("mqtt.fleet.example.org")
    mqtt_session(ip, 1883, 5, osd_count=5, status=False, events=True, wait_message=8.0)


def wifi_toy_drone() -> None:
    toy_phone(wifi_uav_app, 20.0)


def wifi_unknown_drone() -> None:
    toy_phone(unknown_app, 20.0)


def wifi_rtsp_drone() -> None:
    toy_phone(rtsp_app, 20.0)


PHONE: dict[str, Callable[[], None]] = {
    "dji_fly_ldm_off": dji_fly_ldm_off,
    "dji_fly_ldm_on_clean": dji_fly_ldm_on_clean,
    "dji_fly_ldm_on_violation": dji_fly_ldm_on_violation,
    "dji_fly_ldm_on_maps_only": dji_fly_ldm_on_maps_only,
    "parrot_freeflight": parrot_freeflight,
    "qgc_mavlink": qgc_mavlink,
    "dji_cloud_api_mqtt": dji_cloud_api_mqtt,
    "tello_sdk": tello_sdk,
    "wifi_toy_drone": wifi_toy_drone,
    "wifi_unknown_drone": wifi_unknown_drone,
    "wifi_rtsp_drone": wifi_rtsp_drone,
    "hostile_strings": hostile_phone,
}


def run_phone(name: str) -> None:
    say(f"phone {name} pid {os.getpid()}")
    PHONE[name]()
    say("PHONE DONE")
