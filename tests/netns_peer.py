"""Real peers for the namespace tests, run inside a namespace with `python -m tests.netns_peer`.

server CERT KEY PORT    a TLS server that answers every request line with a short body
client HOST PORT SNI N  a TLS client that sends N bytes with that SNI, reads, closes
"""

from __future__ import annotations

import socket
import ssl
import sys
import threading


def server(cert: str, key: str, port: int) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    # IPv4 and IPv6 alike (the IPv6 lab's cloud is at a global address).
    sock = socket.create_server(
        ("::", port), family=socket.AF_INET6, dualstack_ipv6=True, reuse_port=True
    )
    print("ready", flush=True)

    def handle(conn: socket.socket) -> None:
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                while True:
                    data = tls.recv(65536)
                    if not data:
                        break
                    tls.sendall(b"ok\n")
        except (OSError, ssl.SSLError):
            pass

    while True:
        conn, _ = sock.accept()
        threading.Thread(target=handle, args=(conn,), daemon=True).start()


def client(host: str, port: int, sni: str, size: int) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(b"x" * size)
            tls.recv(16)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        client(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
