"""A TCP conversation for tests: segments with real sequence and acknowledgement numbers."""

from __future__ import annotations

from dronewatch.core.flow import IP_PROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Packet
from tests.factories import ip

PSH = 0x08


class TcpConversation:
    """A client and a server exchanging segments; each side's next sequence number and what it
    acknowledges are kept, so every segment made is what a real stack would send next."""

    def __init__(
        self,
        client: tuple[str, int] = ("192.168.1.3", 50000),
        server: tuple[str, int] = ("203.0.113.10", 443),
        *,
        client_isn: int = 1000,
        server_isn: int = 5000,
        ts: float = 1.0,
    ) -> None:
        self.client = client
        self.server = server
        self.seq = {True: client_isn, False: server_isn}
        """Next sequence number each side sends (True: the client)."""
        self.ts = ts
        self.frame = 0

    def segment(
        self,
        from_client: bool,
        flags: int,
        payload: bytes = b"",
        *,
        seq: int | None = None,
        ack: int | None = None,
        advance: bool = True,
        step: float = 0.01,
    ) -> Packet:
        """One segment; by default at the sender's next sequence number, acknowledging all the
        peer sent, and moving the sender's number on (SYN and FIN count one)."""
        self.ts += step
        self.frame += 1
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        s = self.seq[from_client] if seq is None else seq
        a = self.seq[not from_client] if ack is None else ack
        if advance and seq is None:
            length = len(payload) + (1 if flags & TCP_SYN else 0) + (1 if flags & TCP_FIN else 0)
            self.seq[from_client] = (s + length) & 0xFFFFFFFF
        version = 6 if ":" in src[0] else 4
        ip_len = len(payload) + 20 + (40 if version == 6 else 20)
        return Packet(
            ts=self.ts,
            frame=self.frame,
            wirelen=ip_len + 14,
            caplen=ip_len + 14,
            linktype=1,
            ip_version=version,
            src=ip(src[0]),
            dst=ip(dst[0]),
            proto=IP_PROTO_TCP,
            sport=src[1],
            dport=dst[1],
            ip_len=ip_len,
            tcp_flags=flags,
            tcp_seq=s,
            tcp_ack=a if flags & TCP_ACK else 0,
            payload=payload,
            payload_len=len(payload),
        )

    def handshake(self) -> list[Packet]:
        """SYN, SYN-ACK, ACK."""
        return [
            self.segment(True, TCP_SYN, ack=0),
            self.segment(False, TCP_SYN | TCP_ACK),
            self.segment(True, TCP_ACK),
        ]

    def send(self, payload: bytes, **kwargs: object) -> Packet:
        """Client data."""
        return self.segment(True, TCP_ACK | PSH, payload, **kwargs)  # type: ignore[arg-type]

    def reply(self, payload: bytes, **kwargs: object) -> Packet:
        """Server data."""
        return self.segment(False, TCP_ACK | PSH, payload, **kwargs)  # type: ignore[arg-type]

    def ack(self, from_client: bool = True) -> Packet:
        """A pure ACK."""
        return self.segment(from_client, TCP_ACK)

    def fin(self, from_client: bool = True) -> Packet:
        """A FIN (with ACK)."""
        return self.segment(from_client, TCP_FIN | TCP_ACK)

    def rst(self, from_client: bool = True, *, ack: bool = True) -> Packet:
        """A reset."""
        return self.segment(from_client, TCP_RST | (TCP_ACK if ack else 0))
