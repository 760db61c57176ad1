"""Queries of the service: API keys, devices and their LDM history, alerts, flows, captures.

Every method opens its own transaction. Alerts carry a `seq` that grows by one on every insert or
update, from a counter row that serialises writers: a client that polls with `since=<last seq>`
sees every new or changed alert exactly once, in order, however the writes interleave.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import and_, case, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from dronewatch.api import db
from dronewatch.exceptions import DronewatchError

logger = logging.getLogger(__name__)

Role = Literal["reader", "agent", "admin"]
ROLES: tuple[Role, ...] = ("reader", "agent", "admin")
KEY_PREFIX = "dw_"
ALERT_STATUSES = ("open", "acknowledged", "resolved")

KEY_TOUCH_EVERY_S = 60.0
"""A key's last use is recorded at most once in this long."""
KEY_TOUCH_TIMEOUT_S = 0.25
"""How long recording a key's last use may wait for a busy database before it gives up."""
SQLITE_BUSY_TIMEOUT_MS = 30_000
"""The busy timeout every SQLite connection has (`db.make_engine`), restored after a quick write."""
EVIDENCE_MAX_FRAMES = 32
"""Evidence frames kept per flow unless the settings say otherwise."""
EVIDENCE_SNAP_MAX = 65535
"""Bytes kept of one evidence frame (the classic pcap snap length)."""
DB_INT_MAX = 2**63 - 1
"""The largest value of a BIGINT column (SQLite INTEGER, PostgreSQL bigint)."""
POLICY_FIELDS = ("scope", "local_subnets", "allowed_categories", "allowed_destinations")
"""The columns of a device's policy, which the hosts a declaration adopts take from it."""
AGENT_SILENCE_S = 60.0
"""How long after its last coverage report an agent that held flows open is taken for stopped,
unless the settings say otherwise (six of an agent's default 10 s reports)."""
SUCCESSOR_SLACK_S = 1.0
"""How far the next coverage report of a running agent may start from where the last ended."""


class NotFound(DronewatchError):
    """The resource asked for does not exist."""


class Conflict(DronewatchError):
    """The write would break a uniqueness rule (a MAC, IP or key name already in use)."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """An API key as the service sees it (never the secret itself)."""

    id: int
    name: str
    role: Role
    prefix: str
    created_at: float
    revoked_at: float | None
    last_used_at: float | None


def hash_key(token: str) -> str:
    """SHA-256 of a key: keys are 32 random bytes, so a fast hash is enough and no salt needed."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which alerts a list returns."""

    device: str | None = None
    """Device IP or MAC."""
    vendor: str | None = None
    category: str | None = None
    severity: str | None = None
    status: str | None = None
    start: float | None = None
    """Alerts last seen at or after this time."""
    end: float | None = None
    """Alerts first seen before this time."""


def coverage_gaps(
    spans: list[tuple[float, float]], start: float, end: float, slack_s: float = 1.0
) -> list[list[float]]:
    """The parts of [start, end] that no capture span covers, ignoring holes up to `slack_s`
    (the time between two packets is not a gap)."""
    gaps: list[list[float]] = []
    at = start
    for lo, hi in sorted(spans):
        if lo - at > slack_s:
            gaps.append([at, min(lo, end)])
        at = max(at, hi)
        if at >= end:
            break
    if end - at > slack_s:
        gaps.append([at, end])
    return [g for g in gaps if g[1] > g[0]]


def _sent_encrypted(stored: str | None, mac: str) -> int:
    """The encrypted 802.11 data frames a capture's `encrypted` (JSON: sender MAC -> frames)
    holds of `mac`."""
    if not stored:
        return 0
    count = json.loads(stored).get(mac.lower(), 0)
    return count if isinstance(count, int) else 0


class Store:
    """The service database."""

    def __init__(
        self,
        engine: Engine,
        *,
        evidence_max_frames: int = EVIDENCE_MAX_FRAMES,
        agent_silence_s: float = AGENT_SILENCE_S,
    ) -> None:
        self.engine = engine
        self.evidence_max_frames = evidence_max_frames
        self.agent_silence_s = agent_silence_s
        """An agent silent this long after a report with open flows has stopped: those flows
        were never judged."""

    def _quick_write(self, write: Callable[[Connection], object], timeout_s: float) -> None:
        """Run `write` in a transaction of its own that waits at most `timeout_s` for locks
        (SQLite busy timeout; PostgreSQL lock and statement timeouts), and commit it.

        Raises SQLAlchemyError when the database cannot take the write in time.
        """
        ms = max(1, int(timeout_s * 1000))
        with self.engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            try:
                if sqlite:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout = {ms}")
                else:
                    conn.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
                    conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
                write(conn)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                if sqlite:
                    conn.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
                    conn.commit()

    def probe_write(self, timeout_s: float) -> None:
        """Write and commit one row (the `ready_probe` counter) within `timeout_s`: proves the
        database takes writes (not locked, not read-only, not out of space).

        Raises SQLAlchemyError when it does not.
        """
        now = int(time.time())

        def write(conn: Connection) -> None:
            res = conn.execute(
                update(db.counters).where(db.counters.c.name == "ready_probe").values(value=now)
            )
            if res.rowcount == 0:
                conn.execute(insert(db.counters).values(name="ready_probe", value=now))

        try:
            self._quick_write(write, timeout_s)
        except IntegrityError:
            pass  # another probe inserted the row at the same moment: that write went through

    # --- API keys --------------------------------------------------------------------------

    def create_key(self, name: str, role: Role) -> tuple[KeyInfo, str]:
        """A new key; returns its info and the secret, which is shown once and never stored."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        try:
            with self.engine.begin() as conn:
                res = conn.execute(
                    insert(db.api_keys).values(
                        name=name,
                        role=role,
                        prefix=token[:10],
                        key_hash=hash_key(token),
                        created_at=now,
                    )
                )
                key_id = int(res.inserted_primary_key[0])  # type: ignore[index]
        except IntegrityError:
            raise Conflict(f"an API key named {name!r} already exists") from None
        return KeyInfo(key_id, name, role, token[:10], now, None, None), token

    def verify_key(self, token: str) -> KeyInfo | None:
        """The live key with this secret, or None. Only reads: a read request must not wait
        for (or fail on) a write lock; `touch_key` records the use."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(db.api_keys).where(db.api_keys.c.key_hash == hash_key(token)))
                .mappings()
                .first()
            )
        if row is None or row["revoked_at"] is not None:
            return None
        return _key(row)

    def touch_key(self, key: KeyInfo, *, timeout_s: float = KEY_TOUCH_TIMEOUT_S) -> bool:
        """Record that `key` was used (at most once a minute), best effort: when the database is
        busy for `timeout_s` the use is not recorded (the next request tries again). Never
        raises; returns whether the time was written."""
        now = time.time()
        if not key_needs_touch(key, now):
            return False
        stmt = update(db.api_keys).where(db.api_keys.c.id == key.id).values(last_used_at=now)
        try:
            self._quick_write(lambda conn: conn.execute(stmt), timeout_s)
        except SQLAlchemyError as exc:
            logger.debug("last use of key %s not recorded: %s", key.name, exc)
            return False
        return True

    def list_keys(self) -> list[KeyInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(db.api_keys).order_by(db.api_keys.c.id)).mappings()
            return [_key(r) for r in rows]

    def revoke_key(self, name: str) -> None:
        with self.engine.begin() as conn:
            res = conn.execute(
                update(db.api_keys)
                .where(db.api_keys.c.name == name, db.api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
        if res.rowcount == 0:
            raise NotFound(f"no live API key named {name!r}")

    def count_keys(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(db.api_keys)).scalar_one())

    # --- devices ---------------------------------------------------------------------------

    def list_devices(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return self.list_in(conn)

    def list_in(self, conn: Connection) -> list[dict[str, Any]]:
        """Every device, in the caller's transaction."""
        rows = conn.execute(select(db.devices).order_by(db.devices.c.id)).mappings().all()
        # Every device's LDM history in one query, not one query per device (the page's list
        # of a fleet's devices took a query each).
        changes: dict[int, list[RowMapping]] = {}
        for c in conn.execute(
            select(db.ldm_changes).order_by(db.ldm_changes.c.at, db.ldm_changes.c.id)
        ).mappings():
            changes.setdefault(int(c["device_id"]), []).append(c)
        return [self._device(conn, r, changes.get(int(r["id"]), [])) for r in rows]

    def get_device(self, device_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = (
                conn.execute(select(db.devices).where(db.devices.c.id == device_id))
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"no device {device_id}")
            return self._device(conn, row)

    def find_device(self, ip: str | None, mac: str | None) -> dict[str, Any] | None:
        """The device with this MAC, else this IP."""
        with self.engine.connect() as conn:
            return self._find(conn, ip, mac)

    def _find(self, conn: Connection, ip: str | None, mac: str | None) -> dict[str, Any] | None:
        for col, value in ((db.devices.c.mac, mac), (db.devices.c.ip, ip)):
            if value:
                row = conn.execute(select(db.devices).where(col == value)).mappings().first()
                if row is not None:
                    return self._device(conn, row)
        return None

    def create_device(self, fields: dict[str, Any], *, by: str) -> dict[str, Any]:
        """A new device; `ldm` in fields sets its initial local-data mode from now."""
        now = time.time()
        ldm = fields.pop("ldm", None)
        values = {
            "scope": "dedicated",
            "local_subnets": [],
            "allowed_categories": [],
            "allowed_destinations": [],
            "roles": [],
            "discovered": False,
            **fields,
            "created_at": now,
            "updated_at": now,
        }
        try:
            with self.engine.begin() as conn:
                res = conn.execute(insert(db.devices).values(**values))
                device_id = int(res.inserted_primary_key[0])  # type: ignore[index]
                if ldm is not None:
                    self._ldm(conn, device_id, bool(ldm), now, by)
        except IntegrityError:
            raise Conflict("a device with this MAC or IP already exists") from None
        return self.get_device(device_id)

    def update_device(self, device_id: int, fields: dict[str, Any], *, by: str) -> dict[str, Any]:
        ldm = fields.pop("ldm", None)
        try:
            with self.engine.begin() as conn:
                res = conn.execute(
                    update(db.devices)
                    .where(db.devices.c.id == device_id)
                    .values(**fields, updated_at=time.time())
                )
                if res.rowcount == 0:
                    raise NotFound(f"no device {device_id}")
                adopted = self._adopted(conn, device_id)
                policy = {k: v for k, v in fields.items() if k in POLICY_FIELDS}
                if adopted and policy:
                    conn.execute(
                        update(db.devices)
                        .where(db.devices.c.id.in_(adopted))
                        .values(**policy, updated_at=time.time())
                    )
                if ldm is not None:
                    for target in (device_id, *adopted):
                        self._ldm(conn, target, bool(ldm), time.time(), by)
        except IntegrityError:
            raise Conflict("a device with this MAC or IP already exists") from None
        return self.get_device(device_id)

    def delete_device(self, device_id: int) -> None:
        with self.engine.begin() as conn:
            res = conn.execute(delete(db.devices).where(db.devices.c.id == device_id))
        if res.rowcount == 0:
            raise NotFound(f"no device {device_id}")

    def set_ldm(self, device_id: int, on: bool, at: float, *, by: str) -> dict[str, Any]:
        """Record an LDM change effective at `at` (traffic from then on is judged by it)."""
        with self.engine.begin() as conn:
            exists = conn.execute(
                select(db.devices.c.id).where(db.devices.c.id == device_id)
            ).first()
            if exists is None:
                raise NotFound(f"no device {device_id}")
            for target in (device_id, *self._adopted(conn, device_id)):
                self._ldm(conn, target, on, at, by)
        return self.get_device(device_id)

    def _adopted(self, conn: Connection, device_id: int) -> list[int]:
        """The hosts a network or host-name declaration adopted."""
        c = db.devices.c
        return [int(r[0]) for r in conn.execute(select(c.id).where(c.parent_id == device_id))]

    def declarations(self, conn: Connection) -> list[dict[str, Any]]:
        """Devices that name others by network or DHCP host name (`net`, or a `hostname` with
        neither IP nor MAC), oldest first."""
        c = db.devices.c
        rows = (
            conn.execute(
                select(db.devices)
                .where(
                    c.ip.is_(None),
                    c.mac.is_(None),
                    or_(c.net.is_not(None), c.hostname.is_not(None)),
                )
                .order_by(c.id)
            )
            .mappings()
            .all()
        )
        return [self._device(conn, r) for r in rows]

    def adopt(
        self,
        conn: Connection,
        parent: dict[str, Any],
        host: dict[str, Any] | None,
        ip: str | None,
        mac: str | None,
        hostname: str | None,
    ) -> dict[str, Any]:
        """Make a host a declaration names a device under test: a new device (or the host's
        discovered one, `host`) with the declaration's policy and LDM history."""
        now = time.time()
        policy = {k: parent[k] for k in POLICY_FIELDS}
        if host is None:
            res = conn.execute(
                insert(db.devices).values(
                    name=parent["name"],
                    mac=mac,
                    ip=ip,
                    hostname=hostname,
                    roles=[],
                    discovered=True,
                    parent_id=parent["id"],
                    created_at=now,
                    updated_at=now,
                    **policy,
                )
            )
            device_id = int(res.inserted_primary_key[0])  # type: ignore[index]
        else:
            device_id = int(host["id"])
            conn.execute(
                update(db.devices)
                .where(db.devices.c.id == device_id)
                .values(
                    name=host["name"] or parent["name"],
                    parent_id=parent["id"],
                    updated_at=now,
                    **policy,
                )
            )
            conn.execute(delete(db.ldm_changes).where(db.ldm_changes.c.device_id == device_id))
        for event in parent["ldm_history"]:
            conn.execute(
                insert(db.ldm_changes).values(
                    device_id=device_id,
                    at=event["at"],
                    ldm_on=event["on"],
                    changed_by=event["by"],
                    recorded_at=event["recorded_at"],
                )
            )
        row = conn.execute(select(db.devices).where(db.devices.c.id == device_id)).mappings().one()
        return self._device(conn, row)

    def egress_hosts(self, conn: Connection, mac: str | None = None) -> list[str]:
        """Every local host that has egress observations; with `mac`, those whose latest
        observation naming a MAC names that one (the addresses of a device known by its MAC:
        a phone's IPv4 and IPv6 addresses)."""
        c = db.egress.c
        q = select(c.host_ip).distinct()
        if mac is None:
            return [str(r[0]) for r in conn.execute(q)]
        mac = mac.lower()
        # The hosts with an observation from the MAC (in the database), then those whose
        # latest one names it (an address a device left to another is the other's now).
        q = q.where(c.doc["host_mac"].as_string() == mac)
        hosts = [str(r[0]) for r in conn.execute(q)]
        return [ip for ip in hosts if host_mac(self.egress_of(conn, ip)) == mac]

    def device_hosts(self, device: dict[str, Any]) -> list[str]:
        """The addresses a device's traffic is stored under: its own, or, declared by its MAC
        alone, every address its observations came from."""
        if device.get("ip"):
            return [str(device["ip"])]
        if not device.get("mac"):
            return []
        with self.engine.connect() as conn:
            return self.egress_hosts(conn, str(device["mac"]))

    @staticmethod
    def _ldm(conn: Connection, device_id: int, on: bool, at: float, by: str) -> None:
        conn.execute(
            insert(db.ldm_changes).values(
                device_id=device_id, at=at, ldm_on=on, changed_by=by, recorded_at=time.time()
            )
        )

    def _device(
        self, conn: Connection, row: RowMapping, changes: Sequence[RowMapping] | None = None
    ) -> dict[str, Any]:
        """A device row with its LDM history (`changes`, when the caller has read them)."""
        if changes is None:
            changes = (
                conn.execute(
                    select(db.ldm_changes)
                    .where(db.ldm_changes.c.device_id == row["id"])
                    .order_by(db.ldm_changes.c.at, db.ldm_changes.c.id)
                )
                .mappings()
                .all()
            )
        history = [
            {
                "at": c["at"],
                "on": c["ldm_on"],
                "by": c["changed_by"],
                "recorded_at": c["recorded_at"],
            }
            for c in changes
        ]
        out = {k: row[k] for k in row.keys()}
        out["ldm"] = history[-1]["on"] if history else False
        out["ldm_history"] = history
        return out

    # --- alerts ----------------------------------------------------------------------------

    def _next_seq(self, conn: Connection) -> int:
        res = conn.execute(
            update(db.counters)
            .where(db.counters.c.name == "alert_seq")
            .values(value=db.counters.c.value + 1)
            .returning(db.counters.c.value)
        ).first()
        if res is not None:
            return int(res[0])
        conn.execute(insert(db.counters).values(name="alert_seq", value=1))
        return 1

    def get_alert_doc(self, conn: Connection, alert_id: str) -> RowMapping | None:
        return conn.execute(select(db.alerts).where(db.alerts.c.id == alert_id)).mappings().first()

    def upsert_alert(self, conn: Connection, doc: dict[str, Any], device_id: int | None) -> int:
        """Insert or replace an alert (by id) inside the caller's transaction; returns its seq.

        The status an operator set (acknowledged/resolved) is kept; a resolved alert whose
        traffic continues is reopened.
        """
        seq = self._next_seq(conn)
        now = time.time()
        existing = self.get_alert_doc(conn, doc["id"])
        status = "open"
        if existing is not None:
            status = existing["status"]
            if status == "resolved" and doc["last_seen"] > existing["last_seen"]:
                status = "open"
        doc = {**doc, "status": status}
        values = {**alert_columns(doc, seq, device_id), "doc": doc, "updated_at": now}
        if existing is None:
            conn.execute(insert(db.alerts).values(id=doc["id"], **values))
        else:
            conn.execute(update(db.alerts).where(db.alerts.c.id == doc["id"]).values(**values))
        return seq

    def list_alerts(
        self, flt: AlertFilter, *, since: int | None, cursor: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """Alerts matching `flt`.

        With `since`: those changed after that seq, oldest change first (for polling). Otherwise
        newest change first, continuing below `cursor` (a seq from the previous page).
        """
        a = db.alerts.c
        conds = []
        if flt.device:
            conds.append(_device_cond(flt.device))
        for col, value in (
            (a.vendor, flt.vendor),
            (a.category, flt.category),
            (a.severity, flt.severity),
            (a.status, flt.status),
        ):
            if value:
                conds.append(col == value)
        if flt.start is not None:
            conds.append(a.last_seen >= flt.start)
        if flt.end is not None:
            conds.append(a.first_seen < flt.end)
        q = select(db.alerts)
        if since is not None:
            q = q.where(a.seq > since, *conds).order_by(a.seq.asc())
        else:
            if cursor is not None:
                conds.append(a.seq < cursor)
            q = q.where(*conds).order_by(a.seq.desc())
        with self.engine.connect() as conn:
            rows = conn.execute(q.limit(limit)).mappings().all()
        return [_alert(r) for r in rows]

    def get_alert(self, alert_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = self.get_alert_doc(conn, alert_id)
        if row is None:
            raise NotFound(f"no alert {alert_id}")
        return _alert(row)

    def set_alert_status(
        self, alert_id: str, status: str, *, by: str, comment: str | None = None
    ) -> dict[str, Any]:
        """Acknowledge, resolve or reopen an alert, recording who and when."""
        if status not in ALERT_STATUSES:
            raise ValueError(f"status must be one of {', '.join(ALERT_STATUSES)}")
        now = time.time()
        with self.engine.begin() as conn:
            row = self.get_alert_doc(conn, alert_id)
            if row is None:
                raise NotFound(f"no alert {alert_id}")
            values: dict[str, Any] = {
                "status": status,
                "seq": self._next_seq(conn),
                "updated_at": now,
                "doc": {**row["doc"], "status": status, "status_comment": comment},
            }
            if status == "acknowledged":
                values |= {"acked_by": by, "acked_at": now}
            elif status == "resolved":
                values |= {"resolved_by": by, "resolved_at": now}
            conn.execute(update(db.alerts).where(db.alerts.c.id == alert_id).values(**values))
        return self.get_alert(alert_id)

    def flows_by_uid(self, uids: Sequence[str]) -> list[dict[str, Any]]:
        """The stored records of these flows, in the order given (unknown uids left out)."""
        if not uids:
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(db.flows.c.uid, db.flows.c.doc).where(db.flows.c.uid.in_(list(uids)))
            ).all()
        docs = {r[0]: dict(r[1]) for r in rows}
        return [docs[u] for u in uids if u in docs]

    def insert_evidence(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Store the evidence frames of flows not stored yet (by uid).

        At most `evidence_max_frames` frames are kept per flow, each cut to EVIDENCE_SNAP_MAX
        bytes; the frames left out (beyond the cap, or malformed: no base64 data, a time or
        length no pcap can hold) are counted in the row's `frames_dropped`.
        """
        if not rows:
            return
        uids = [r["uid"] for r in rows]
        known = set(
            conn.execute(select(db.evidence.c.uid).where(db.evidence.c.uid.in_(uids))).scalars()
        )
        new = list({r["uid"]: r for r in rows if r["uid"] not in known}.values())
        if new:
            conn.execute(insert(db.evidence), [self._capped(r) for r in new])

    def _capped(self, row: dict[str, Any]) -> dict[str, Any]:
        frames = row.get("frames") or []
        linktype = row.get("linktype")
        kept: list[dict[str, Any]] = []
        if isinstance(linktype, int) and 0 <= linktype <= 0xFFFF:
            for frame in frames:
                if len(kept) >= self.evidence_max_frames:
                    break
                clean = _clean_frame(frame)
                if clean is not None:
                    kept.append(clean)
        else:
            linktype = 1
        dropped = len(frames) - len(kept)
        if dropped:
            logger.info("evidence of %s: %d frames dropped", row.get("uid"), dropped)
        return {
            "uid": row["uid"],
            "agent": row["agent"],
            "linktype": linktype,
            "frames": kept,
            "frames_dropped": dropped,
        }

    def evidence_for(self, uids: Sequence[str]) -> list[dict[str, Any]]:
        """The stored evidence of these flows, in the order given (with `frames_dropped`)."""
        if not uids:
            return []
        with self.engine.connect() as conn:
            rows = (
                conn.execute(select(db.evidence).where(db.evidence.c.uid.in_(list(uids))))
                .mappings()
                .all()
            )
        found = {r["uid"]: dict(r) for r in rows}
        return [found[u] for u in uids if u in found]

    def max_alert_seq(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(select(func.coalesce(func.max(db.alerts.c.seq), 0))).scalar_one()
            )

    def alert_counts(self) -> dict[tuple[str, str], int]:
        """Alerts by (category, status), for the metrics."""
        a = db.alerts.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(a.category, a.status, func.count()).group_by(a.category, a.status)
            ).all()
        return {(r[0], r[1]): int(r[2]) for r in rows}

    def device_alert_docs(self, conn: Connection, device_ip: str) -> dict[str, dict[str, Any]]:
        """The stored alert documents of a device address, by alert id."""
        rows = conn.execute(
            select(db.alerts.c.id, db.alerts.c.doc).where(db.alerts.c.device_ip == device_ip)
        ).all()
        return {str(r[0]): dict(r[1]) for r in rows}

    def delete_alert(self, conn: Connection, alert_id: str) -> None:
        """Remove an alert the judge no longer raises (a lookup that became part of a leak)."""
        conn.execute(delete(db.alerts).where(db.alerts.c.id == alert_id))

    # --- the web page's overview (read only) -----------------------------------------------

    def egress_spans(
        self, device_ips: Sequence[str] | None, start: float | None, end: float | None
    ) -> list[tuple[float, float, int, str]]:
        """(first, last, bytes out, category) of every stored flow that carried bytes off a
        device in a window (`device_ips` None: every device), oldest first."""
        f = db.flows.c
        conds = [f.scope == "public", f.bytes_out > 0]
        if device_ips is not None:
            conds.append(f.device_ip.in_(list(device_ips)))
        if start is not None:
            conds.append(f.last_ts >= start)
        if end is not None:
            conds.append(f.ts < end)
        q = select(f.ts, f.last_ts, f.bytes_out, f.category).where(*conds).order_by(f.ts)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [(float(r[0]), float(r[1]), int(r[2]), r[3] or "other") for r in rows]

    def flow_span(self, device_ips: Sequence[str] | None = None) -> tuple[float, float] | None:
        """The first and last packet times of the stored flows (of these device addresses);
        None when there is none."""
        f = db.flows.c
        q = select(func.min(f.ts), func.max(f.last_ts))
        if device_ips is not None:
            q = q.where(f.device_ip.in_(list(device_ips)))
        with self.engine.connect() as conn:
            row = conn.execute(q).first()
        if row is None or row[0] is None:
            return None
        return float(row[0]), float(row[1])

    def device_activity(
        self, device_ip: str, start: float | None, end: float | None
    ) -> dict[str, Any]:
        """A device's stored flows in a window: how many, how many the flow table evicted
        before they ended (their counters may be split across flows), and the last time one
        was seen."""
        f = db.flows.c
        conds = [f.device_ip == device_ip]
        if start is not None:
            conds.append(f.last_ts >= start)
        if end is not None:
            conds.append(f.ts < end)
        evicted = func.sum(case((f.end_reason == "evicted", 1), else_=0))
        q = select(func.count(), func.max(f.last_ts), evicted).where(*conds)
        with self.engine.connect() as conn:
            row = conn.execute(q).one()
        return {
            "flows": int(row[0]),
            "last_seen": float(row[1]) if row[1] is not None else None,
            "evicted": int(row[2] or 0),
        }

    def alert_status_counts(self) -> dict[str, dict[str, int]]:
        """How many alerts each device address has, by status."""
        a = db.alerts.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(a.device_ip, a.status, func.count()).group_by(a.device_ip, a.status)
            ).all()
        out: dict[str, dict[str, int]] = {}
        for ip, status, n in rows:
            out.setdefault(str(ip), {})[str(status)] = int(n)
        return out

    # --- egress observations ----------------------------------------------------------------

    def insert_egress(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> list[str]:
        """Store observations not stored yet (by key); returns the host addresses of new ones."""
        if not rows:
            return []
        keys = [r["key"] for r in rows]
        known = set(
            conn.execute(select(db.egress.c.key).where(db.egress.c.key.in_(keys))).scalars()
        )
        unique = list({r["key"]: r for r in rows if r["key"] not in known}.values())
        if unique:
            conn.execute(insert(db.egress), unique)
        return list(dict.fromkeys(r["host_ip"] for r in unique))

    def egress_of(self, conn: Connection, host_ip: str) -> list[dict[str, Any]]:
        """Every observation of a host address, in arrival order."""
        rows = conn.execute(
            select(db.egress.c.doc).where(db.egress.c.host_ip == host_ip).order_by(db.egress.c.id)
        ).scalars()
        return [dict(doc) for doc in rows]

    # --- flows, captures, batches -----------------------------------------------------------

    def insert_flows(
        self, conn: Connection, rows: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Store flows not stored yet (by uid); returns the rows that were new."""
        if not rows:
            return []
        uids = [r["uid"] for r in rows]
        known = set(conn.execute(select(db.flows.c.uid).where(db.flows.c.uid.in_(uids))).scalars())
        new = [r for r in rows if r["uid"] not in known]
        unique = list({r["uid"]: r for r in new}.values())
        if unique:
            conn.execute(insert(db.flows), unique)
        return unique

    def flows_for(
        self,
        device_ips: Sequence[str],
        start: float | None,
        end: float | None,
        limit: int,
        cursor: tuple[float, str] | None = None,
    ) -> list[dict[str, Any]]:
        """The flows of a device (at any of its addresses, `device_hosts`), in time order."""
        if not device_ips:
            return []
        f = db.flows.c
        conds: list[ColumnElement[bool]] = [f.device_ip.in_(list(device_ips))]
        if start is not None:
            conds.append(f.last_ts >= start)
        if end is not None:
            conds.append(f.ts < end)
        if cursor is not None:
            conds.append(or_(f.ts > cursor[0], and_(f.ts == cursor[0], f.uid > cursor[1])))
        with self.engine.connect() as conn:
            rows = (
                conn.execute(select(f.doc).where(*conds).order_by(f.ts, f.uid).limit(limit))
                .scalars()
                .all()
            )
        return [dict(r) for r in rows]

    def egress_summary(
        self, device_ips: Sequence[str], start: float | None, end: float | None
    ) -> list[dict[str, Any]]:
        """Off-device traffic of a device (at any of its addresses) in a window, by destination
        and category."""
        if not device_ips:
            return []
        f = db.flows.c
        conds: list[ColumnElement[bool]] = [f.device_ip.in_(list(device_ips)), f.scope == "public"]
        if start is not None:
            conds.append(f.last_ts >= start)
        if end is not None:
            conds.append(f.ts < end)
        dest = func.coalesce(f.server_name, f.resp_h)
        q = (
            select(
                dest.label("destination"),
                f.category,
                func.sum(f.bytes_out),
                func.sum(f.bytes_in),
                func.count(),
                func.min(f.ts),
                func.max(f.last_ts),
            )
            .where(*conds)
            .group_by(dest, f.category)
            .order_by(func.sum(f.bytes_out).desc())
        )
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            {
                "destination": r[0],
                "category": r[1] or "other",
                "bytes_out": int(r[2] or 0),
                "bytes_in": int(r[3] or 0),
                "flows": int(r[4]),
                "first_seen": r[5],
                "last_seen": r[6],
            }
            for r in rows
        ]

    def add_capture(self, conn: Connection, values: dict[str, Any]) -> bool:
        """Store a capture's coverage report; returns False for one already stored. The same
        capture replayed again (under another path spelling, or after a crash) reports the same
        span and packets, and covers nothing new."""
        c = db.captures.c
        same = conn.execute(
            select(c.id).where(
                c.first_ts == values["first_ts"],
                c.last_ts.is_(None)
                if values["last_ts"] is None
                else c.last_ts == values["last_ts"],
                c.packets == values["packets"],
            )
        ).first()
        if same is not None:
            return False
        conn.execute(insert(db.captures).values(**values, received_at=time.time()))
        return True

    def coverage(
        self, start: float | None, end: float | None, mac: str | None = None
    ) -> dict[str, Any]:
        """Packets, drops, completeness, analyzer failures, flows never judged, flows evicted
        from a full flow table, flows with content gaps or stopped inspection, packets dropped
        for a wrong checksum, and the encrypted 802.11 data frames the device of MAC `mac` sent,
        of the captures overlapping a window."""
        c = db.captures.c
        conds = []
        if start is not None:
            conds.append(func.coalesce(c.last_ts, c.first_ts) >= start)
        if end is not None:
            conds.append(c.first_ts < end)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    c.packets,
                    c.drops,
                    c.complete,
                    c.first_ts,
                    c.last_ts,
                    c.analyzer_errors,
                    c.evicted_flows,
                    c.gap_flows,
                    c.missed_bytes,
                    c.inspection_stopped,
                    c.bad_checksums,
                    c.encrypted,
                ).where(*conds)
            ).all()
            lost = self._flows_never_judged(conn, start, end)
        drops = [r[1] for r in rows]
        gaps = (
            coverage_gaps([(float(r[3]), float(r[4] or r[3])) for r in rows], start, end)
            if start is not None and end is not None
            else []
        )
        return {
            "captures": len(rows),
            "packets": sum(int(r[0]) for r in rows),
            "drops": None if not rows or any(d is None for d in drops) else sum(drops),
            "complete": all(bool(r[2]) for r in rows),
            "gaps": gaps,
            "analyzer_errors": sum(int(r[5] or 0) for r in rows),
            "lost_flows": lost,
            "evicted_flows": sum(int(r[6] or 0) for r in rows),
            "gap_flows": sum(int(r[7] or 0) for r in rows),
            "missed_bytes": sum(int(r[8] or 0) for r in rows),
            "inspection_stopped": sum(int(r[9] or 0) for r in rows),
            "bad_checksums": sum(int(r[10] or 0) for r in rows),
            "encrypted_frames": sum(_sent_encrypted(r[11], mac) for r in rows) if mac else 0,
        }

    def _flows_never_judged(self, conn: Connection, start: float | None, end: float | None) -> int:
        """Flows with packets in the window that an agent held open at its last coverage report
        before it stopped (killed, crashed): they were captured but never judged.

        A report with open flows is followed, while its agent runs, by the next report of the
        same agent and source, starting where it ended. Without one, the agent stopped: for good
        when a later report of that source shows it restarted, or when its last report is older
        than `agent_silence_s`; until then its flows are taken to be still open.
        """
        c = db.captures.c
        conds = [c.open_flows > 0, c.last_ts.is_not(None)]
        if start is not None:
            conds.append(c.last_ts >= start)
        if end is not None:
            conds.append(c.open_since < end)
        held = conn.execute(
            select(c.agent, c.source, c.first_ts, c.last_ts, c.open_flows, c.received_at).where(
                *conds
            )
        ).all()
        if not held:
            return 0
        since = min(float(r[3]) for r in held) - SUCCESSOR_SLACK_S
        starts: dict[tuple[str, str], list[float]] = {}
        for agent, source, first in conn.execute(
            select(c.agent, c.source, c.first_ts).where(c.first_ts >= since)
        ):
            starts.setdefault((agent, source), []).append(float(first))
        now = time.time()
        lost = 0
        for agent, source, first, last, flows, received in held:
            later = starts.get((agent, source), [])
            if any(abs(t - last) <= SUCCESSOR_SLACK_S for t in later if t > first):
                continue  # the next report came: the flows were still open, then ended
            restarted = any(t > last for t in later)
            if restarted or now - float(received) > self.agent_silence_s:
                lost += int(flows)
        return lost

    def claim_batch(self, conn: Connection, batch_id: str, agent: str, records: int) -> bool:
        """Record a batch id; False when it was already ingested (the re-send is ignored)."""
        exists = conn.execute(
            select(db.ingest_batches.c.batch_id).where(db.ingest_batches.c.batch_id == batch_id)
        ).first()
        if exists is not None:
            return False
        conn.execute(
            insert(db.ingest_batches).values(
                batch_id=batch_id, agent=agent, records=records, received_at=time.time()
            )
        )
        return True

    def ldm_changes_for(self, conn: Connection, device_id: int) -> list[tuple[float, bool]]:
        rows = conn.execute(
            select(db.ldm_changes.c.at, db.ldm_changes.c.ldm_on)
            .where(db.ldm_changes.c.device_id == device_id)
            .order_by(db.ldm_changes.c.at, db.ldm_changes.c.id)
        ).all()
        return [(float(r[0]), bool(r[1])) for r in rows]

    def discover_devices(
        self,
        conn: Connection,
        hosts: Iterable[dict[str, Any]],
        *,
        ldm: bool | None = None,
        by: str = "discovery",
    ) -> int:
        """Add ground stations found in the traffic that no one declared; returns how many were
        new. Their LDM is off until set, or `ldm` from the start of time when given."""
        now = time.time()
        added = 0
        for h in hosts:
            if self._find(conn, h.get("ip"), h.get("mac")) is not None:
                continue
            added += 1
            res = conn.execute(
                insert(db.devices).values(
                    name=None,
                    mac=h.get("mac"),
                    ip=h.get("ip"),
                    hostname=h.get("hostname"),
                    scope="dedicated",
                    local_subnets=[],
                    allowed_categories=[],
                    allowed_destinations=[],
                    roles=list(h.get("roles", [])),
                    discovered=True,
                    created_at=now,
                    updated_at=now,
                )
            )
            if ldm is not None:
                device_id = int(res.inserted_primary_key[0])  # type: ignore[index]
                self._ldm(conn, device_id, ldm, 0.0, by)
        return added


def host_mac(docs: Sequence[dict[str, Any]]) -> str | None:
    """The MAC a host's egress observations came from (the latest that names one)."""
    for doc in reversed(docs):
        mac = doc.get("host_mac")
        if mac:
            return str(mac).lower()
    return None


def _device_cond(device: str) -> Any:
    """Alerts of a device IP or MAC. An address is looked up by `device_ip` alone (it is never
    a MAC), so its index serves it: with an OR on the MAC too, every alert was read."""
    a = db.alerts.c
    try:
        ipaddress.ip_address(device)
    except ValueError:
        return or_(a.device_ip == device, a.device_mac == device.lower())
    return a.device_ip == device


def alert_columns(doc: dict[str, Any], seq: int, device_id: int | None) -> dict[str, Any]:
    """The columns of the alerts table an alert document fills (besides `id`, `doc` and the
    operator's and time columns)."""
    return {
        "seq": seq,
        "device_id": device_id,
        "device_ip": doc["device_ip"],
        "device_mac": doc.get("device_mac"),
        "note": doc["note"],
        "category": doc["category"],
        "severity": doc["severity"],
        "vendor": doc.get("vendor"),
        "rule_id": doc.get("rule_id"),
        "dest_name": doc.get("dest_name"),
        "dest_ip": doc.get("dest_ip"),
        "dest_country": doc.get("dest_country"),
        "first_seen": doc["first_seen"],
        "last_seen": doc["last_seen"],
        "bytes_out": doc.get("bytes_out", 0),
        "status": doc["status"],
    }


def key_needs_touch(key: KeyInfo, now: float) -> bool:
    """Whether a key's last use is unrecorded or older than KEY_TOUCH_EVERY_S."""
    return key.id > 0 and (key.last_used_at is None or now - key.last_used_at > KEY_TOUCH_EVERY_S)


def _clean_frame(frame: object) -> dict[str, Any] | None:
    """An evidence frame as the service keeps it, or None when it is malformed."""
    if not isinstance(frame, dict):
        return None
    ts, data = frame.get("ts"), frame.get("data")
    number, wirelen = frame.get("frame", 0), frame.get("wirelen", 0)
    if not isinstance(ts, int | float) or isinstance(ts, bool) or not math.isfinite(ts):
        return None
    if not 0 <= ts < 2**32 or not isinstance(data, str):
        return None
    if not isinstance(number, int) or not 0 <= number <= DB_INT_MAX:
        return None
    if not isinstance(wirelen, int) or not 0 <= wirelen < 2**32:
        return None
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) > EVIDENCE_SNAP_MAX:
        data = base64.b64encode(raw[:EVIDENCE_SNAP_MAX]).decode()
    return {"ts": float(ts), "frame": number, "wirelen": max(wirelen, len(raw)), "data": data}


def _key(row: RowMapping) -> KeyInfo:
    return KeyInfo(
        row["id"],
        row["name"],
        row["role"],
        row["prefix"],
        row["created_at"],
        row["revoked_at"],
        row["last_used_at"],
    )


def _alert(row: RowMapping) -> dict[str, Any]:
    doc = dict(row["doc"])
    doc.update(
        seq=row["seq"],
        status=row["status"],
        device_id=row["device_id"],
        acked_by=row["acked_by"],
        acked_at=row["acked_at"],
        resolved_by=row["resolved_by"],
        resolved_at=row["resolved_at"],
        updated_at=row["updated_at"],
    )
    return doc
