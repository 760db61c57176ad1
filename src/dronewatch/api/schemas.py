"""Request and response bodies of the API (what the OpenAPI document shows)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dronewatch.judge.rulepack import CATEGORIES

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class AlertOut(BaseModel):
    """An alert: data left a device while its local-data mode was on, or a vendor lookup."""

    model_config = ConfigDict(extra="allow")
    id: str
    seq: int = Field(description="Grows on every change; poll with since=<largest seq seen>.")
    note: str = Field(
        description="ldm.data_left_device, ldm.vendor_dns_lookup, ldm.egress_attempt, "
        "ldm.other_traffic"
    )
    msg: str
    severity: str
    category: str
    status: str = Field(description="open, acknowledged or resolved")
    first_seen: float
    last_seen: float
    device_ip: str
    device_mac: str | None = None
    device_name: str | None = None
    device_id: int | None = None
    dest_ip: str | None = None
    dest_port: int | None = None
    dest_name: str | None = None
    dest_country: str | None = None
    dest_asn: int | None = None
    dest_as_org: str | None = None
    vendor: str | None = None
    app: str | None = None
    rule_id: str | None = None
    evidence: dict[str, str] = Field(default_factory=dict)
    bytes_out: int = 0
    bytes_in: int = 0
    pkts_out: int = 0
    pkts_in: int = 0
    flows: int = 0
    uids: list[str] = Field(default_factory=list)
    acked_by: str | None = None
    acked_at: float | None = None
    resolved_by: str | None = None
    resolved_at: float | None = None
    updated_at: float | None = None


class AlertPage(BaseModel):
    """One page of alerts."""

    items: list[AlertOut]
    next_cursor: str | None = Field(
        None, description="Pass as cursor= for the next (older) page; null on the last page."
    )
    last_seq: int = Field(
        description="Largest seq in this page (or the since given): poll with "
        "since=last_seq to get only what changed afterwards."
    )
    has_more: bool


class AlertDetail(AlertOut):
    """An alert with its evidence flows."""

    evidence_flows: list[dict[str, Any]] = Field(default_factory=list)


class EvidenceFrame(BaseModel):
    ts: float
    frame: int = Field(description="position of the frame in its capture")
    wirelen: int
    layers: dict[str, dict[str, Any]] = Field(description="layer name -> field -> value")


class EvidenceOut(BaseModel):
    """The dissected first frames of one evidence flow."""

    uid: str | None
    dissector: str = Field(description="tshark (Wireshark's dissectors) or dronewatch")
    frames: list[EvidenceFrame]


class StatusChange(BaseModel):
    """An operator's note on an acknowledgement or resolution."""

    model_config = ConfigDict(extra="forbid", strict=True)
    comment: str | None = Field(None, max_length=1000)


class DeviceIn(BaseModel):
    """A ground-station device and its policy."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str | None = Field(None, max_length=200)
    mac: str | None = Field(None, description="aa:bb:cc:dd:ee:ff")
    ip: str | None = None
    net: str | None = Field(
        None,
        description="A network (CIDR): every host of it seen in the traffic is a device under "
        "test with this policy and LDM history (as `--device CIDR`); give no mac or ip with it.",
    )
    hostname: str | None = Field(
        None,
        max_length=255,
        description="A DHCP host name (case-insensitive): alone, the host that gives it is a "
        "device under test with this policy (as `--device NAME`).",
    )
    scope: Literal["dedicated", "shared"] = "dedicated"
    local_subnets: list[str] = Field(default_factory=list)
    allowed_categories: list[str] = Field(default_factory=list)
    allowed_destinations: list[str] = Field(default_factory=list)
    ldm: bool | None = Field(None, description="Local-data mode, on from now when given.")

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower().replace("-", ":")
        if not _MAC.match(value):
            raise ValueError("a MAC address looks like aa:bb:cc:dd:ee:ff")
        return value

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise ValueError("not an IP address") from None

    @field_validator("net")
    @classmethod
    def _net(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError("not a network (e.g. 192.168.42.0/24)") from None

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not value or not value.isprintable():
            raise ValueError("a host name is printable text, not empty")
        return value

    @field_validator("local_subnets")
    @classmethod
    def _subnets(cls, value: list[str]) -> list[str]:
        out = []
        for text in value:
            try:
                out.append(str(ipaddress.ip_network(text.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{text!r} is not a subnet (e.g. 192.168.2.0/24)") from None
        return out

    @field_validator("allowed_categories")
    @classmethod
    def _categories(cls, value: list[str]) -> list[str]:
        bad = [c for c in value if c not in CATEGORIES]
        if bad:
            raise ValueError(f"unknown categories {bad}: use {', '.join(CATEGORIES)}")
        return value


class DevicePatch(DeviceIn):
    """Fields to change; those left out keep their value."""

    scope: Literal["dedicated", "shared"] | None = None  # type: ignore[assignment]
    local_subnets: list[str] | None = None  # type: ignore[assignment]
    allowed_categories: list[str] | None = None  # type: ignore[assignment]
    allowed_destinations: list[str] | None = None  # type: ignore[assignment]

    @field_validator("local_subnets", "allowed_categories", mode="wrap")
    @classmethod
    def _optional(cls, value: Any, handler: Any) -> Any:
        return None if value is None else handler(value)


class LdmChange(BaseModel):
    """Turn local-data mode on or off."""

    model_config = ConfigDict(extra="forbid", strict=True)
    on: bool
    at: float | None = Field(
        None, description="When the change took effect (epoch seconds); default: now."
    )


class LdmEvent(BaseModel):
    at: float
    on: bool
    by: str
    recorded_at: float


class DeviceOut(BaseModel):
    id: int
    name: str | None
    mac: str | None
    ip: str | None
    hostname: str | None
    net: str | None = Field(None, description="the network this declaration names")
    parent_id: int | None = Field(
        None, description="the network or host-name declaration this device was adopted by"
    )
    scope: str
    local_subnets: list[str]
    allowed_categories: list[str]
    allowed_destinations: list[str]
    roles: list[str]
    discovered: bool
    ldm: bool
    ldm_history: list[LdmEvent]
    created_at: float
    updated_at: float


class Destination(BaseModel):
    destination: str
    category: str
    bytes_out: int
    bytes_in: int
    flows: int
    first_seen: float | None
    last_seen: float | None


class Coverage(BaseModel):
    captures: int
    packets: int
    drops: int | None = Field(description="null when a capture did not report drops")
    complete: bool
    gaps: list[list[float]] = Field(
        default_factory=list,
        description="[from, to] times of the window no capture covered (a stopped or restarted "
        "sensor); given for windows with both start and end",
    )
    analyzer_errors: int = Field(
        default=0, description="analyzer hook calls that failed: inspection incomplete"
    )
    lost_flows: int = Field(
        default=0,
        description="flows an agent held open when it stopped (killed, crashed): captured but "
        "never judged",
    )
    evicted_flows: int = Field(
        default=0,
        description="flows a full flow table ended early (a flood of new flows): what an "
        "analyzer would have read across the cut may be missed",
    )
    gap_flows: int = Field(
        default=0,
        description="TCP flows with content gaps: data acknowledged that no capture showed",
    )
    missed_bytes: int = Field(default=0, description="the bytes of those content gaps")
    inspection_stopped: int = Field(
        default=0,
        description="flows whose inspection stopped: their analyzers waited for an answer that "
        "never came (counted, not read)",
    )
    bad_checksums: int = Field(
        default=0,
        description="packets dropped unread for a wrong IPv4, TCP, UDP or ICMP checksum (an "
        "agent run with --checksums auto or verify), as their receivers dropped them",
    )
    encrypted_frames: int = Field(
        default=0,
        description="protected 802.11 data frames the device sent that no capture could read (a "
        "monitor-mode agent on a protected network): the verdict cannot be clean",
    )


class VerdictOut(BaseModel):
    """Whether anything left a device in a time window."""

    device_id: int
    device_ip: str | None
    start: float | None
    end: float | None
    ldm: bool = Field(description="LDM was on at some time in the window")
    verdict: str = Field(description="clean, violation, incomplete or not_applicable")
    msg: str
    destinations: list[Destination]
    alerts: int
    coverage: Coverage


class FlowPage(BaseModel):
    items: list[dict[str, Any]]
    next_cursor: str | None


class IngestIn(BaseModel):
    """A batch of pipeline records (flows, dns, devices, capture, alerts...) from an agent."""

    model_config = ConfigDict(strict=True)

    batch_id: str = Field(
        min_length=1, max_length=100, description="Unique per batch; a re-sent batch is ignored."
    )
    agent: str = Field("agent", min_length=1, max_length=100)
    records: list[dict[str, Any]] = Field(max_length=50_000)
    discovered_ldm: bool | None = Field(
        None,
        description="Admin keys only: give devices this batch discovers this local-data mode "
        "from the start of time (a lab replaying a capture made with LDM on).",
    )


class IngestOut(BaseModel):
    batch_id: str
    duplicate: bool
    records: int
    flows_new: int
    devices_discovered: int
    alerts_changed: int


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Literal["reader", "agent", "admin"]


class KeyOut(BaseModel):
    id: int
    name: str
    role: str
    prefix: str
    created_at: float
    revoked_at: float | None
    last_used_at: float | None


class NewKey(KeyOut):
    key: str = Field(description="The secret: shown this once, stored only hashed.")


class Problem(BaseModel):
    """Why a request was refused."""

    detail: str


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no key, or an unknown or revoked key"},
    403: {"model": Problem, "description": "the key's role may not do this"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "no such"}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": Problem, "description": "in use"}}
BAD_REQUEST: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "parameters that do not go together"}
}


class Health(BaseModel):
    status: str
    detail: str | None = None


EPOCH_MAX = 253_402_300_799.0
"""9999-12-31T23:59:59Z, the last time a date can hold."""
Epoch = Annotated[float | None, Query(ge=0, le=EPOCH_MAX, allow_inf_nan=False)]
"""A time query parameter: finite epoch seconds from 1970 to 9999 (else a 422 naming it)."""
FlowCursor = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9]{1,12}(\.[0-9]{1,9})?(e[+-]?[0-9]{1,3})?:[A-Za-z0-9]{1,32}$",
        description="next_cursor of the previous page (time:uid)",
    ),
]
"""A flow page cursor as `next_cursor` gives it: ASCII time, a colon, a flow uid."""
