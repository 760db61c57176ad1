"""Rule packs: the YAML schema of `rules/*.yaml`, and loading them with FILE:LINE errors.

A pack file holds `pack`, `version`, `description` and `rules`. Each rule names a vendor, app and
category, keeps the evidence tag and source keys of the research catalogue it came from, gives the
conditions a flow must meet (`match`: all given conditions must hold; within a list any value may
match) and carries its own positive and negative test cases. See docs/rules.md.

Errors are reported with the file and line of the offending YAML node: packs are parsed with
PyYAML's composer so that every node keeps its start mark, and pydantic error locations such as
`rules.3.match.sni` are walked back down the node tree.

Validating every pack is a fifth of a second of start-up for every command (PyYAML, pydantic's
validators); `load_packs` keeps the rule set it validated in the user's cache directory, under
a digest of everything that made it (each pack file's name and bytes, this module's source, the
versions of dronewatch, pydantic and Python), and reads it back while none of those changed. A
cache file is read only when the user owns it and its directory and no one else may write them;
packs with any issue are never cached (their errors are reported at every load).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import ipaddress
import logging
import os
import pickle
import re
import stat
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)

from dronewatch import __version__
from dronewatch.exceptions import RulePackError
from dronewatch.paths import default_cache_dir

if TYPE_CHECKING:
    import yaml  # imported where a pack is parsed: a cached rule set needs no YAML

logger = logging.getLogger(__name__)


Category = Literal[
    "flight_log",
    "media_sync",
    "telemetry",
    "livestream",
    "firmware",
    "geofence",
    "maps",
    "account",
    "analytics",
    "crash_report",
    "ads",
    "local_link",
    "other",
]
CATEGORIES: tuple[str, ...] = get_args(Category)
"""The fixed category set of the research catalogue (endpoints.md)."""

Evidence = Literal["E", "E-w", "I"]
Severity = Literal["info", "low", "medium", "high", "critical"]

SEVERITIES = ("info", "low", "medium", "high", "critical")
EVIDENCE_TAGS = ("E", "E-w", "I")

DEFAULT_SEVERITY: Mapping[str, str] = {
    "flight_log": "high",
    "media_sync": "high",
    "telemetry": "high",
    "livestream": "high",
    "firmware": "medium",
    "geofence": "medium",
    "maps": "low",
    "account": "medium",
    "analytics": "medium",
    "crash_report": "medium",
    "ads": "low",
    "local_link": "info",
    "other": "low",
}
"""Severity of a rule that does not set one: what leaving the device in that category costs."""

NAME_FIELDS = ("host", "sni", "quic_sni", "http_host", "dns_name")
"""Match conditions on destination names; `host` means any of the other four."""

RESERVED_ID_PREFIX = "behaviour."
"""Rule ids the classifier's behavioural labels use; packs may not define them."""

PACK_SUFFIXES = (".yaml", ".yml")

_ID_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9][a-z0-9_]*)+$")
_LABEL_RE = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$")
_GLOB_LABEL_RE = re.compile(r"^[a-z0-9_*?-]+$")
_LINK_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_JA4_RE = re.compile(r"^[tqd][0-9a-z]{2}[di][0-9]{4}[0-9A-Za-z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$")
_PORT_RANGE_RE = re.compile(r"^(\d{1,5})\s*-\s*(\d{1,5})$")


# --- field validators -------------------------------------------------------------------------


def _host_pattern(value: str) -> str:
    """Check and normalise a host pattern: `host.example.com`, `.example.com` or a glob."""
    pattern = value.strip().lower()
    if not pattern.startswith("."):
        pattern = pattern.rstrip(".")
    if not pattern:
        raise ValueError("empty host pattern")
    if pattern.startswith("."):
        labels = pattern[1:].split(".")
        if any("*" in lab or "?" in lab for lab in labels):
            raise ValueError(f"{value!r}: a suffix pattern (leading dot) cannot hold wildcards")
        if len(labels) < 2:
            raise ValueError(f"{value!r}: a suffix pattern needs at least two labels")
        bad = [lab for lab in labels if not _LABEL_RE.match(lab)]
        if bad:
            raise ValueError(f"{value!r}: invalid label {bad[0]!r}")
        return pattern
    labels = pattern.split(".")
    if "*" in pattern or "?" in pattern:
        if any(not lab or not _GLOB_LABEL_RE.match(lab) for lab in labels):
            raise ValueError(f"{value!r}: invalid glob (labels of a-z 0-9 _ - * ?)")
        if len(labels) < 3 or any("*" in lab or "?" in lab for lab in labels[-2:]):
            raise ValueError(f"{value!r}: a glob must end in two literal labels (e.g. x-*.dji.com)")
        return pattern
    bad = [lab for lab in labels if not _LABEL_RE.match(lab)]
    if bad:
        raise ValueError(f"{value!r}: invalid host name label {bad[0]!r}")
    return pattern


def _path_pattern(value: str) -> str:
    if not value.startswith(("/", "*")):
        raise ValueError(f"{value!r}: an HTTP path pattern starts with '/' (or a glob '*')")
    return value


def _mqtt_filter(value: str) -> str:
    """Check an MQTT topic filter: `+` fills one whole level, `#` only the last level."""
    if not value:
        raise ValueError("empty MQTT topic filter")
    levels = value.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError(f"{value!r}: '#' must be a whole level and the last one")
        if "+" in level and level != "+":
            raise ValueError(f"{value!r}: '+' must fill a whole level")
    return value


def parse_port_spec(value: object) -> tuple[int, int]:
    """A port condition as an inclusive (low, high) range: `8883` or `"14540-14549"`."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a port")
    if isinstance(value, int):
        low = high = value
    elif isinstance(value, str):
        text = value.strip()
        m = _PORT_RANGE_RE.match(text)
        if m:
            low, high = int(m.group(1)), int(m.group(2))
        elif text.isdigit():
            low = high = int(text)
        else:
            raise ValueError(f"{value!r}: a port is an integer or a range 'low-high'")
    else:
        raise ValueError(f"{value!r}: a port is an integer or a range 'low-high'")
    if not (0 <= low <= 65535 and 0 <= high <= 65535):
        raise ValueError(f"{value!r}: ports are 0-65535")
    if low > high:
        raise ValueError(f"{value!r}: range start is above its end")
    return low, high


def _port_spec(value: object) -> str:
    low, high = parse_port_spec(value)
    return str(low) if low == high else f"{low}-{high}"


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=True))
    except ValueError as exc:
        raise ValueError(f"{value!r}: not an IP network in CIDR notation ({exc})") from None


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError(f"{value!r}: not an IP address") from None


def _ja4(value: str) -> str:
    if not _JA4_RE.match(value):
        raise ValueError(f"{value!r}: not a JA4 fingerprint (e.g. t13d1516h2_8daaf6152771_...)")
    return value


def _hex(value: str) -> str:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{value!r}: not a hex string") from None
    if not raw:
        raise ValueError("empty hex string")
    return raw.hex()


def _link(value: str) -> str:
    if not _LINK_RE.match(value):
        raise ValueError(f"{value!r}: a link name is lower_snake (e.g. dji_wifi)")
    return value


def _rule_id(value: str) -> str:
    if not _ID_RE.match(value):
        raise ValueError(f"{value!r}: a rule id is dotted lower_snake (e.g. dji.flysafe.api)")
    if value.startswith(RESERVED_ID_PREFIX):
        raise ValueError(f"{value!r}: ids under {RESERVED_ID_PREFIX!r} are reserved")
    return value


HostPattern = Annotated[StrictStr, AfterValidator(_host_pattern)]
PathPattern = Annotated[StrictStr, AfterValidator(_path_pattern)]
MqttFilter = Annotated[StrictStr, AfterValidator(_mqtt_filter)]
PortSpec = Annotated[str, BeforeValidator(_port_spec)]
Cidr = Annotated[StrictStr, AfterValidator(_cidr)]
IpText = Annotated[StrictStr, AfterValidator(_ip_address)]
Ja4 = Annotated[StrictStr, AfterValidator(_ja4)]
HexBytes = Annotated[StrictStr, AfterValidator(_hex)]
LinkName = Annotated[StrictStr, AfterValidator(_link)]
RuleId = Annotated[StrictStr, AfterValidator(_rule_id)]
Text = Annotated[StrictStr, Field(min_length=1)]
Port = Annotated[StrictInt, Field(ge=0, le=65535)]


# --- schema -----------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class MatchSpec(_Model):
    """Conditions on a flow: every condition given must hold; in a list, any value may match."""

    host: list[HostPattern] | None = Field(default=None, min_length=1)
    """Any destination name: SNI, QUIC SNI, HTTP Host, the DNS name of the responder, a query."""
    sni: list[HostPattern] | None = Field(default=None, min_length=1)
    dns_name: list[HostPattern] | None = Field(default=None, min_length=1)
    """The responder's name from the DNS cache, or a name the flow asked DNS for."""
    http_host: list[HostPattern] | None = Field(default=None, min_length=1)
    quic_sni: list[HostPattern] | None = Field(default=None, min_length=1)
    http_path: list[PathPattern] | None = Field(default=None, min_length=1)
    """Path prefixes (matched at a `/` boundary) or globs (`*` crosses `/`); query ignored."""
    mqtt_topic: list[MqttFilter] | None = Field(default=None, min_length=1)
    """MQTT filters with `+` (one level) and `#` (the rest), against `mqtt_topics`."""
    ports: list[PortSpec] | None = Field(default=None, min_length=1)
    """Responder ports: integers or `"low-high"` ranges."""
    proto: Literal["tcp", "udp"] | None = None
    ip: list[Cidr] | None = Field(default=None, min_length=1)
    """Responder address in one of these networks."""
    asn: list[StrictInt] | None = Field(default=None, min_length=1)
    ja4: list[Ja4] | None = Field(default=None, min_length=1)
    payload_prefix: HexBytes | None = None
    """The first payload bytes, as hex; only known when the caller passes the payload."""
    link: LinkName | None = None
    """Drone-link protocol, as an analyzer publishes it in meta `link`."""
    service: LinkName | None = None
    """Application protocol an analyzer recognised (flow service: rtmp, rtsp, mqtt, tls...)."""
    local: StrictBool = False
    """The rule describes a local drone-link flow: it never matches a public responder."""

    @model_validator(mode="after")
    def _has_condition(self) -> MatchSpec:
        if not self.conditions():
            raise ValueError("match needs at least one condition (a rule must not match all)")
        return self

    def conditions(self) -> list[str]:
        """Names of the conditions given (`local` is a guard, not a condition)."""
        return [
            name
            for name in type(self).model_fields
            if name != "local" and getattr(self, name) is not None
        ]

    def name_conditions(self) -> list[str]:
        """The destination-name conditions given."""
        return [name for name in NAME_FIELDS if getattr(self, name) is not None]


class RuleCase(_Model):
    """Facts of one flow for a rule's test: the fields a classifier reads off a flow."""

    sni: StrictStr | None = None
    quic_sni: StrictStr | None = None
    http_host: StrictStr | None = None
    dns_name: StrictStr | None = None
    dns_query: list[StrictStr] | None = None
    http_path: StrictStr | None = None
    mqtt_topics: list[StrictStr] | None = None
    resp_p: Port | None = None
    proto: Literal["tcp", "udp", "icmp", "icmp6"] | None = None
    resp_ip: IpText | None = None
    asn: StrictInt | None = None
    ja4: StrictStr | None = None
    link: StrictStr | None = None
    service: StrictStr | None = None
    payload: HexBytes | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> RuleCase:
        if not self.model_fields_set:
            raise ValueError("a test case needs at least one flow fact")
        return self


class RuleTests(_Model):
    """A rule's own test cases: flows that must classify to it, and flows that must not."""

    match: list[RuleCase] = Field(min_length=1)
    no_match: list[RuleCase] = Field(min_length=1)


class Rule(_Model):
    """One classification rule."""

    id: RuleId
    vendor: Text
    app: Text
    """The app(s) the rule is about, or `any` for a vendor-wide rule."""
    category: Category
    confidence: float = Field(ge=0.0, le=1.0)
    evidence: Evidence
    """E (seen literally in a cited source), E-w (weak source), I (inferred)."""
    source: Text
    """Source keys of endpoints.md and a short description, e.g. `S3, S5: decompiled GO 4`."""
    description: Text
    severity: Severity
    """Defaults from the category (DEFAULT_SEVERITY) when the pack does not set it."""
    match: MatchSpec
    tests: RuleTests
    responder: Literal["aircraft", "ground_station"] | None = None
    """For a local drone-link rule: which end the responder (the port matched) is. A flow the rule
    matches then names its ground station and its aircraft (dronewatch.judge.devices)."""

    @model_validator(mode="before")
    @classmethod
    def _default_severity(cls, data: Any) -> Any:
        if isinstance(data, dict) and "severity" not in data:
            # An unknown category is reported on its own; do not add a missing-severity error.
            default = DEFAULT_SEVERITY.get(str(data.get("category")), "medium")
            return {**data, "severity": default}
        return data

    @model_validator(mode="after")
    def _local_consistent(self) -> Rule:
        if self.match.local and self.match.name_conditions():
            raise ValueError("a local rule (local: true) cannot match on destination names")
        if self.match.local != (self.category == "local_link"):
            raise ValueError("category local_link and local: true go together")
        if self.responder is not None and not self.match.local:
            raise ValueError("responder (aircraft or ground_station) is for local rules only")
        return self


class _PackHeader(_Model):
    pack: Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9_-]*$")]
    version: StrictInt | StrictStr
    description: Text
    rules: list[Any] = Field(min_length=1)


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LintIssue:
    """A problem found in a pack, at a file and line (line 0: the whole file or directory)."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        if self.line > 0:
            return f"{self.path}:{self.line}: {self.message}"
        return f"{self.path}: {self.message}"


class RulePackLintError(RulePackError):
    """Rule packs that failed to load, with every issue found."""

    def __init__(self, issues: Sequence[LintIssue]) -> None:
        self.issues = list(issues)
        first = str(self.issues[0]) if self.issues else "invalid rule pack"
        more = f" (and {len(self.issues) - 1} more)" if len(self.issues) > 1 else ""
        super().__init__(first + more)


@dataclass(frozen=True, slots=True)
class RuleOrigin:
    """Where a rule was defined, and the lines of its test cases."""

    path: Path
    line: int
    pack: str
    match_lines: tuple[int, ...] = ()
    no_match_lines: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class PackInfo:
    """One loaded pack file."""

    name: str
    version: int | str
    description: str
    path: Path
    rules: int


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules of every loaded pack, in load order (bundled packs first, by file name)."""

    rules: tuple[Rule, ...]
    origins: Mapping[str, RuleOrigin]
    packs: tuple[PackInfo, ...] = ()

    @classmethod
    def of(cls, rules: Sequence[Rule], path: Path | None = None) -> RuleSet:
        """A rule set built in code (tests, embedding) rather than loaded from packs."""
        where = path or Path("<memory>")
        return cls(
            rules=tuple(rules),
            origins={r.id: RuleOrigin(path=where, line=0, pack="memory") for r in rules},
        )

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def get(self, rule_id: str) -> Rule | None:
        """The rule with this id, if loaded."""
        return next((r for r in self.rules if r.id == rule_id), None)


# --- loading ----------------------------------------------------------------------------------


def bundled_rules_dir() -> Path:
    """The directory of the packs shipped with dronewatch.

    An installed package carries them as `dronewatch/rules/`; an editable or development checkout
    has them in the repository's top-level `rules/`, next to `src/`.
    """
    shipped = importlib.resources.files("dronewatch") / "rules"
    # A zipped install gives a Traversable that is not a Path; packs must be on disk to be read.
    if isinstance(shipped, Path) and shipped.is_dir():
        return shipped
    return Path(__file__).resolve().parents[3] / "rules"


def pack_files(directory: Path) -> list[Path]:
    """The pack files of a directory, sorted by name."""
    return sorted(p for p in directory.iterdir() if p.suffix in PACK_SUFFIXES and p.is_file())


LinePath = tuple[str | int, ...]


def _walk_lines(
    node: yaml.Node, path: LinePath, lines: dict[LinePath, int], dupes: list[tuple[int, str]]
) -> None:
    """Record the 1-based line of every node under `node`, keyed by its data path."""
    import yaml

    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            # Keys are scalars here: SafeLoader already refused unhashable (collection) keys.
            key = str(key_node.value)
            if key == "<<":
                continue
            if key in seen:
                dupes.append((key_node.start_mark.line + 1, key))
            seen.add(key)
            # The key's line names the entry: `sni:` rather than the first list item below it.
            lines.setdefault((*path, key), key_node.start_mark.line + 1)
            _walk_lines(value_node, (*path, key), lines, dupes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk_lines(item, (*path, i), lines, dupes)


def _line_of(loc: Sequence[str | int], lines: Mapping[LinePath, int]) -> int:
    """The line of the deepest node on a pydantic error location that exists in the file."""
    path: LinePath = ()
    for part in loc:
        candidate = (*path, part)
        if candidate in lines:
            path = candidate
    return lines.get(path, 1)


def _message(err: Mapping[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"] if _is_path_part(p))
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{loc}: unknown key {str(err['loc'][-1])!r}"
    if kind == "missing":
        return f"{loc}: missing required key {str(err['loc'][-1])!r}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def _is_path_part(part: object) -> bool:
    # Union and validator tags such as 'function-after[...]' or 'int' are not data keys.
    return isinstance(part, int) or (isinstance(part, str) and "[" not in part)


@dataclass(slots=True)
class _Document:
    data: Any
    lines: dict[LinePath, int]
    """1-based line of every node, by data path."""
    dupes: list[tuple[int, str]]
    """(line, key) of keys given twice in one mapping."""


def _compose(text: str) -> _Document | None:
    """Parse one YAML document, keeping the lines of its nodes; None for an empty document."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)  # libyaml when built with it
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        lines: dict[LinePath, int] = {}
        dupes: list[tuple[int, str]] = []
        # Walk before constructing: resolving a `<<` merge key rewrites the mapping node in place.
        _walk_lines(node, (), lines, dupes)
        return _Document(loader.construct_document(node), lines, dupes)
    finally:
        loader.dispose()


@dataclass(slots=True)
class _ParsedPack:
    info: PackInfo
    rules: list[tuple[Rule, RuleOrigin]]


def _parse_pack(path: Path, issues: list[LintIssue]) -> _ParsedPack | None:
    """Validate one pack file; record what is wrong in `issues`; return its valid rules."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        issues.append(LintIssue(path, 0, f"cannot read pack: {exc}"))
        return None
    try:
        doc = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        issues.append(LintIssue(path, line, f"YAML syntax error: {what or exc}"))
        return None
    except yaml.YAMLError as exc:
        issues.append(LintIssue(path, 1, f"YAML error: {exc}"))
        return None
    if doc is None:
        issues.append(LintIssue(path, 1, "empty pack file"))
        return None
    data, lines = doc.data, doc.lines
    for line, key in doc.dupes:
        issues.append(LintIssue(path, line, f"duplicate key {key!r}"))
    if not isinstance(data, dict):
        issues.append(LintIssue(path, 1, "a pack is a mapping with pack, version, rules"))
        return None
    try:
        header = _PackHeader.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            issues.append(LintIssue(path, _line_of(err["loc"], lines), _message(err)))
        return None
    rules: list[tuple[Rule, RuleOrigin]] = []
    for i, raw in enumerate(header.rules):
        try:
            rule = Rule.model_validate(raw)
        except ValidationError as exc:
            for err in exc.errors():
                loc = ("rules", i, *err["loc"])
                issues.append(LintIssue(path, _line_of(loc, lines), _message({**err, "loc": loc})))
            continue
        origin = RuleOrigin(
            path=path,
            line=lines.get(("rules", i), 1),
            pack=header.pack,
            match_lines=tuple(
                lines.get(("rules", i, "tests", "match", j), 1)
                for j in range(len(rule.tests.match))
            ),
            no_match_lines=tuple(
                lines.get(("rules", i, "tests", "no_match", j), 1)
                for j in range(len(rule.tests.no_match))
            ),
        )
        rules.append((rule, origin))
    info = PackInfo(
        name=header.pack,
        version=header.version,
        description=header.description,
        path=path,
        rules=len(rules),
    )
    return _ParsedPack(info, rules)


def check_packs(
    dirs: Sequence[Path] = (), *, bundled: bool = True
) -> tuple[RuleSet, list[LintIssue]]:
    """Load the bundled packs and those in `dirs`, collecting every issue instead of raising.

    The rule set holds the rules that validated (a rule whose id repeats one loaded before it is
    left out), so their test cases can still be run.
    """
    issues: list[LintIssue] = []
    directories = ([bundled_rules_dir()] if bundled else []) + list(dirs)
    rules: list[Rule] = []
    origins: dict[str, RuleOrigin] = {}
    packs: list[PackInfo] = []
    pack_names: dict[str, Path] = {}
    for directory in directories:
        if not directory.is_dir():
            issues.append(LintIssue(directory, 0, "rule pack directory does not exist"))
            continue
        files = pack_files(directory)
        if not files:
            logger.warning("no rule packs (*.yaml) in %s", directory)
        for path in files:
            parsed = _parse_pack(path, issues)
            if parsed is None:
                continue
            first = pack_names.get(parsed.info.name)
            if first is not None:
                issues.append(
                    LintIssue(path, 1, f"duplicate pack name {parsed.info.name!r} (also {first})")
                )
            pack_names.setdefault(parsed.info.name, path)
            packs.append(parsed.info)
            for rule, origin in parsed.rules:
                prior = origins.get(rule.id)
                if prior is not None:
                    issues.append(
                        LintIssue(
                            path,
                            origin.line,
                            f"duplicate rule id {rule.id!r} (first defined at "
                            f"{prior.path}:{prior.line})",
                        )
                    )
                    continue
                rules.append(rule)
                origins[rule.id] = origin
    return RuleSet(rules=tuple(rules), origins=origins, packs=tuple(packs)), issues


def load_packs(dirs: Sequence[Path] = (), *, bundled: bool = True) -> RuleSet:
    """Load the bundled packs plus the user pack directories `dirs`.

    Raises:
        RulePackLintError: (a RulePackError) with every issue, when any pack is invalid or a
            rule id is defined twice.
    """
    directories = ([bundled_rules_dir()] if bundled else []) + list(dirs)
    path = _cache_path(directories)
    if path is not None:
        cached = _read_cached(path)
        if cached is not None:
            logger.debug("loaded %d rules from the cache %s", len(cached.rules), path)
            return cached
    ruleset, issues = check_packs(dirs, bundled=bundled)
    if issues:
        raise RulePackLintError(issues)
    logger.debug("loaded %d rules from %d packs", len(ruleset.rules), len(ruleset.packs))
    if path is not None:
        _write_cached(path, ruleset)
    return ruleset


_CACHE_KEEP = 16
"""Cached rule sets kept (the newest): one per set of packs in use, old ones removed."""


def _cache_path(directories: Sequence[Path]) -> Path | None:
    """Where the rule set of these directories is cached; None where it is not (no digest, no
    home directory to keep a cache in)."""
    digest = _digest(directories)
    if digest is None:
        return None
    try:
        return default_cache_dir() / f"rules-{digest}.pickle"
    except RuntimeError:  # Path.home(): no home directory (a service account without one)
        return None


def _digest(directories: Sequence[Path]) -> str | None:
    """The digest a rule set is cached under: of every input that made it (the name and bytes of
    each pack file, in load order, this module's source, the versions of dronewatch, pydantic and
    Python). None where a directory cannot be read or holds no pack (`check_packs` reports it)."""
    h = hashlib.sha256()
    try:
        h.update(Path(__file__).read_bytes())
        for part in (__version__, pydantic.VERSION, sys.version):
            h.update(part.encode() + b"\0")
        for directory in directories:
            files = pack_files(directory)
            if not files:
                return None
            for path in files:
                data = path.read_bytes()
                h.update(f"{path.resolve()}\0{len(data)}\0".encode())
                h.update(data)
    except OSError:
        return None
    return h.hexdigest()


def _private(st: os.stat_result) -> bool:
    """Owned by this user and writable by no one else: safe to read a pickle from."""
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _read_cached(path: Path) -> RuleSet | None:
    """The rule set cached at `path`; None when there is none, or it cannot be trusted or read."""
    try:
        if not _private(os.stat(path.parent)):
            return None
        with open(path, "rb") as fh:
            if not _private(os.fstat(fh.fileno())):
                return None
            ruleset = pickle.load(fh)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged file is made again, never fatal
        logger.debug("rule cache %s not read: %s", path, exc)
        return None
    return ruleset if isinstance(ruleset, RuleSet) else None


def _write_cached(path: Path, ruleset: RuleSet) -> None:
    """Keep `ruleset` at `path` (written whole, then renamed), and the newest few others; a cache
    that cannot be written is only logged."""
    directory = path.parent
    tmp = directory / f".{path.name}.{os.getpid()}"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            pickle.dump(ruleset, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        others = [p for p in directory.glob("rules-*.pickle") if p != path]
        others.sort(key=lambda p: p.stat().st_mtime_ns)
        for old in others[: max(0, len(others) - (_CACHE_KEEP - 1))]:
            old.unlink(missing_ok=True)
    except OSError as exc:
        logger.debug("rule cache %s not written: %s", path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


__all__ = [
    "CATEGORIES",
    "DEFAULT_SEVERITY",
    "EVIDENCE_TAGS",
    "NAME_FIELDS",
    "SEVERITIES",
    "LintIssue",
    "MatchSpec",
    "PackInfo",
    "Rule",
    "RuleCase",
    "RuleOrigin",
    "RulePackLintError",
    "RuleSet",
    "RuleTests",
    "bundled_rules_dir",
    "check_packs",
    "load_packs",
    "pack_files",
    "parse_port_spec",
]
