"""Entry point of the recorder's background roles (servers, simulated aircraft, the phone).

python agent.py ROLE ARGS...    (record_pcaps.py starts these, often via `ip netns exec`)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers  # noqa: E402


def hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="role", required=True)
    p = sub.add_parser("dns")
    p.add_argument("bind", type=hostport)
    p = sub.add_parser("http")
    p.add_argument("binds", type=hostport, nargs="+")
    p.add_argument("--cert")
    p.add_argument("--key")
    p = sub.add_parser("quic")
    p.add_argument("binds", type=hostport, nargs="+")
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p = sub.add_parser("rtsp")
    p.add_argument("bind", type=hostport)
    p = sub.add_parser("duml")
    p.add_argument("bind", type=hostport)
    p = sub.add_parser("arsdk")
    p.add_argument("host")
    p.add_argument("--c2d-port", type=int, default=2233)
    p = sub.add_parser("tello")
    p.add_argument("host")
    p = sub.add_parser("toydrone")
    p.add_argument("kind", choices=["wifi_uav", "unknown", "rtsp"])
    p.add_argument("host")
    p = sub.add_parser("vehicle")
    p.add_argument("bind", type=hostport)
    p.add_argument("gcs", type=hostport)
    p.add_argument("--secs", type=float, default=8.0)
    p = sub.add_parser("phone")
    p.add_argument("scenario")
    a = ap.parse_args(argv)

    if a.role == "dns":
        servers.serve_dns(*a.bind)
    elif a.role == "http":
        servers.serve_http(a.binds, a.cert, a.key)
    elif a.role == "quic":
        servers.serve_quic(a.binds, a.cert, a.key)
    elif a.role == "rtsp":
        servers.serve_rtsp(*a.bind)
    elif a.role == "duml":
        servers.serve_duml(*a.bind)
    elif a.role == "arsdk":
        servers.serve_arsdk(a.host, a.c2d_port)
    elif a.role == "tello":
        import tello

        tello.serve_tello(a.host)
    elif a.role == "toydrone":
        import toydrone

        if a.kind == "wifi_uav":
            toydrone.serve_wifi_uav(a.host)
        elif a.kind == "rtsp":
            import rtspdrone

            rtspdrone.serve_rtsp_drone(a.host)
        else:
            toydrone.serve_unknown(a.host)
    elif a.role == "vehicle":
        servers.serve_mavlink_vehicle(*a.bind, *a.gcs, a.secs)
    elif a.role == "phone":
        import scenarios

        scenarios.run_phone(a.scenario)


if __name__ == "__main__":
    main()
