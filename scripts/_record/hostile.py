"""The phone of scenario hostile_strings: real clients putting hostile text in every wire field
that dronewatch prints, stores or forwards (runs inside namespace dwphone).

Every name a device on the network chooses is attacker-controlled text: the phone's DHCP hostname
(busybox udhcpc), DNS query names (dnspython), a TLS SNI and an HTTP Host header. Each carries what
a terminal, a web page, a syslog line or a CEF event must not take as its own: ESC sequences that
clear the screen and print a fake CLEAN verdict, CR/LF, NUL, U+2028, bidirectional overrides,
`<script>`, the CEF and syslog separators `|`, `=` and `\\`, and names as long as each protocol
allows. The phone keeps its DUML link to the aircraft up meanwhile and makes one ordinary DJI Fly
request from its uplink, so both its addresses are judged as a ground station's.

The clients are real; where a client library refuses such a name the bytes are written by it all
the same and only the name is changed: Python `ssl` validates SNI, so the ClientHello is made by
Python `ssl` (MemoryBIO) for a placeholder name of the same length and the placeholder's bytes are
replaced by the hostile ones before it is sent on a real TCP connection (the server answers or
refuses it; the handshake cannot finish, since the transcript changed). `http.client` refuses
CR/LF and NUL in a header, so the HTTP request is written to a real TCP socket as it is.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

import zone
from clients import client_context, duml_link, https_session, say

DNS = "10.77.0.1"
AIRCRAFT = "192.168.2.1"
EVIL = "evil.example"
"""A name of the lab's zone (see zone.py); every hostile DNS name below ends with it, so the lab
DNS server's SOA apex stays a plain name."""

ESC_CLEAR = "\x1b[2J\x1b[3J\x1b[H"
"""Clear the screen and the scroll-back, cursor home."""
FAKE_VERDICT = "192.168.2.20 (Pixel-7): CLEAN: nothing left the device"

DHCP_HOSTNAME = (
    f"{ESC_CLEAR}\x1b]0;dronewatch: CLEAN\x07{FAKE_VERDICT}\r\n\x00\x1b[32m{FAKE_VERDICT}\x1b[0m"
    "\u202e<script>alert('dhcp')</script>\u2028\x7f\x9b2J"
)
"""Option 12 of the phone's DHCP DISCOVER and REQUEST (UTF-8): a clear screen, a window title,
a fake verdict twice (once on a line of its own, after a NUL, once in green), a right-to-left
override, HTML, U+2028, DEL and a C1 CSI."""

DNS_NAMES: tuple[tuple[bytes, ...], ...] = (
    (
        b"a|b=c\\d\r\nCEF:0|dronewatch|dronewatch|0|ldm.none|CLEAN|0|src=1",
        b"cef",
        b"evil",
        b"example",
    ),
    (
        b"nul\x00byte",
        "line\u2028sep".encode(),
        "\u202etxt.exe".encode(),
        b"<script>alert(1)</script>",
        b"evil",
        b"example",
    ),
    (
        b"\x1b[2J" + b"l" * 59,
        b"o" * 63,
        b"n" * 63,
        b"g" * 40,
        b"evil",
        b"example",
    ),
)
"""Query names as raw labels (dnspython sends any bytes in a label): the CEF and syslog separators
with CR/LF and a forged CEF header; NUL, U+2028, a right-to-left override and HTML; and a name as
long as DNS allows (247 bytes on the wire) that starts by clearing the screen."""

SNI_CEF = (
    b"x.evil.example|CEF:0|dronewatch|dronewatch|0|ldm.none|CLEAN|0|src=192.168.2.20 "
    b"dhost=ok\\=1 msg=clean\r\n<165>1 - - - - - CEF:0|forged\x1b[2J<script>alert('sni')</script>"
)
"""A server_name forging a CEF header, CEF extensions, a second syslog line and a script."""
SNI_LONG = (
    "\u202e".encode() + b"\x00" + "\u2028".encode() + b"\x1b[H" + b"L" * 230 + b".evil.example"
)
"""A server_name as long as a TLS library sends (255 bytes) with a bidi override, NUL, U+2028
and a cursor move in front."""

HTTP_HOST = (
    b"evil.example\r|CEF:0|x|y|1|z|w|10|a\\=b\x1b[2J\x00<script>alert('host')</script>"
    + "\u202e\u2028".encode()
    + b"h" * 2000
)
"""A Host header with a bare CR, the CEF separators, ESC, NUL, HTML, bidi and U+2028, 2 KB long."""
USER_AGENT = "\x1b[2JDJI Fly/1.13.4\u2028\u202e<b>bold</b>".encode()
"""A User-Agent with a clear screen, U+2028, a bidi override and HTML."""
HTTP_REQUEST = (
    b"GET /<script>alert('uri')</script>?q=a|b=c\\d HTTP/1.1\r\nHost: "
    + HTTP_HOST
    + b"\r\nUser-Agent: "
    + USER_AGENT
    + b"\r\nAccept: */*\r\nConnection: close\r\n\r\n"
)


def ip_of(name: str) -> str:
    from clients import resolve

    addrs = [a for a in resolve(DNS, name, "A") if a[0].isdigit()]
    if not addrs:
        raise RuntimeError(f"{name} did not resolve")
    return addrs[0]


def lookup(labels: tuple[bytes, ...]) -> str:
    """Ask the lab's DNS server for A of the name made of `labels` (dnspython, UDP)."""
    import dns.message
    import dns.name
    import dns.query
    import dns.rcode

    qname = dns.name.Name((*labels, b""))
    answer = dns.query.udp(dns.message.make_query(qname, "A"), DNS, timeout=3.0)
    rcode = dns.rcode.to_text(answer.rcode())
    say(f"dns {qname.to_text()!r}: {rcode}")
    return rcode


def placeholder(n: int) -> str:
    """A plain host name of exactly `n` characters (labels of at most 50)."""
    parts, left = [], n
    while left > 51:
        parts.append("q" * 50)
        left -= 51
    parts.append("q" * left)
    return ".".join(parts)


def tls_hello(ip: str, sni: bytes, port: int = 443) -> int:
    """A Python `ssl` ClientHello whose server_name is replaced by `sni`, sent on a real TCP
    connection; the server's answer is read (until it stops) and the connection closed."""
    stand_in = placeholder(len(sni)).encode()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_context(("http/1.1",)).wrap_bio(
        incoming, outgoing, server_hostname=stand_in.decode()
    )
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    out = outgoing.read()
    if out.count(stand_in) != 1:
        raise RuntimeError("the placeholder name is not in the ClientHello once")
    wire = out.replace(stand_in, sni)
    got = 0
    with socket.create_connection((ip, port), timeout=5) as s:
        s.sendall(wire)
        s.settimeout(1.0)
        try:
            while chunk := s.recv(65536):
                got += len(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    say(f"tls ClientHello of {len(wire)} bytes with a {len(sni)}-byte SNI: {got} bytes back")
    return got


def http_raw(ip: str, request: bytes, port: int = 80) -> bytes:
    """Send `request` as it is on a real TCP connection; the answer (until the server closes)."""
    buf = b""
    with socket.create_connection((ip, port), timeout=5) as s:
        s.sendall(request)
        s.settimeout(2.0)
        try:
            while chunk := s.recv(65536):
                buf += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    status = buf.partition(b"\r\n")[0]
    say(f"http raw request of {len(request)} bytes: {status!r}")
    return buf


def hostile_phone() -> None:
    """DHCP with the hostile hostname, the DUML link, then hostile DNS names, SNIs and Host."""
    from toydrone import dhcp

    dhcp(hostname=DHCP_HOSTNAME)
    stop = threading.Event()
    link = threading.Thread(target=duml_link, args=(AIRCRAFT, stop), daemon=True)
    link.start()
    try:
        time.sleep(1.0)
        for labels in DNS_NAMES:
            lookup(labels)
        # One ordinary DJI Fly request from the uplink, so that the rules name the phone's
        # uplink address a ground station and the hostile flows are judged (alerts with LDM on).
        name = "flysafe-api.dji.com"
        ua = {"User-Agent": zone.UA_DJI_FLY, "Accept": "application/json"}
        https_session(name, ip_of(name), [("GET", "/api/v2/geofence/version", None, ua)])
        ip = ip_of(EVIL)
        tls_hello(ip, SNI_CEF)
        tls_hello(ip, SNI_LONG)
        http_raw(ip, HTTP_REQUEST)
        time.sleep(1.0)
    finally:
        stop.set()
        link.join(5)
