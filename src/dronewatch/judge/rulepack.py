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
import functools
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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, get_args

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


class _Pydantic:
    """pydantic metadata of a field (`Field(min_length=1)`, `AfterValidator(check)`...), named
    here and made only when a pack is validated (`_adapter`): the rule types are plain
    dataclasses, so a rule set read from the cache needs nothing of pydantic, whose import is a
    tenth of a second of every command's start-up."""

    __slots__ = ("args", "kwargs", "name")

    def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.name, self.args, self.kwargs = name, args, kwargs

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        import pydantic

        return handler(Annotated[source, getattr(pydantic, self.name)(*self.args, **self.kwargs)])


def _after(check: Any) -> _Pydantic:
    return _Pydantic("AfterValidator", check)


StrictStr = Annotated[str, _Pydantic("Strict")]
StrictInt = Annotated[int, _Pydantic("Strict")]
StrictBool = Annotated[bool, _Pydantic("Strict")]
HostPattern = Annotated[StrictStr, _after(_host_pattern)]
PathPattern = Annotated[StrictStr, _after(_path_pattern)]
MqttFilter = Annotated[StrictStr, _after(_mqtt_filter)]
PortSpec = Annotated[str, _Pydantic("BeforeValidator", _port_spec)]
Cidr = Annotated[StrictStr, _after(_cidr)]
IpText = Annotated[StrictStr, _after(_ip_address)]
Ja4 = Annotated[StrictStr, _after(_ja4)]
HexBytes = Annotated[StrictStr, _after(_hex)]
LinkName = Annotated[StrictStr, _after(_link)]
RuleId = Annotated[StrictStr, _after(_rule_id)]
Text = Annotated[StrictStr, _Pydantic("Field", min_length=1)]
Port = Annotated[StrictInt, _Pydantic("Field", ge=0, le=65535)]
NonEmpty = _Pydantic("Field", min_length=1)
"""A list condition, when given, names at least one value."""


# --- schema -----------------------------------------------------------------------------------

_FORBID: dict[str, Any] = {"extra": "forbid"}
"""pydantic's configuration of every type below: a key the schema does not name is an error."""


@dataclass(frozen=True, slots=True)
class MatchSpec:
    """Conditions on a flow: every condition given must hold; in a list, any value may match."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID
    host: Annotated[list[HostPattern] | None, NonEmpty] = None
    """Any destination name: SNI, QUIC SNI, HTTP Host, the DNS name of the responder, a query."""
    sni: Annotated[list[HostPattern] | None, NonEmpty] = None
    dns_name: Annotated[list[HostPattern] | None, NonEmpty] = None
    """The responder's name from the DNS cache, or a name the flow asked DNS for."""
    http_host: Annotated[list[HostPattern] | None, NonEmpty] = None
    quic_sni: Annotated[list[HostPattern] | None, NonEmpty] = None
    http_path: Annotated[list[PathPattern] | None, NonEmpty] = None
    """Path prefixes (matched at a `/` boundary) or globs (`*` crosses `/`); query ignored."""
    mqtt_topic: Annotated[list[MqttFilter] | None, NonEmpty] = None
    """MQTT filters with `+` (one level) and `#` (the rest), against `mqtt_topics`."""
    ports: Annotated[list[PortSpec] | None, NonEmpty] = None
    """Responder ports: integers or `"low-high"` ranges."""
    proto: Literal["tcp", "udp"] | None = None
    ip: Annotated[list[Cidr] | None, NonEmpty] = None
    """Responder address in one of these networks."""
    asn: Annotated[list[StrictInt] | None, NonEmpty] = None
    ja4: Annotated[list[Ja4] | None, NonEmpty] = None
    payload_prefix: HexBytes | None = None
    """The first payload bytes, as hex; only known when the caller passes the payload."""
    link: LinkName | None = None
    """Drone-link protocol, as an analyzer publishes it in meta `link`."""
    service: LinkName | None = None
    """Application protocol an analyzer recognised (flow service: rtmp, rtsp, mqtt, tls...)."""
    local: StrictBool = False
    """The rule describes a local drone-link flow: it never matches a public responder."""

    def __post_init__(self) -> None:
        if not self.conditions():
            raise ValueError("match needs at least one condition (a rule must not match all)")

    def conditions(self) -> list[str]:
        """Names of the conditions given (`local` is a guard, not a condition)."""
        return [
            f.name for f in fields(self) if f.name != "local" and getattr(self, f.name) is not None
        ]

    def name_conditions(self) -> list[str]:
        """The destination-name conditions given."""
        return [name for name in NAME_FIELDS if getattr(self, name) is not None]


@dataclass(frozen=True, slots=True)
class RuleCase:
    """Facts of one flow for a rule's test: the fields a classifier reads off a flow."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID
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

    def __post_init__(self) -> None:
        if not self.facts():
            raise ValueError("a test case needs at least one flow fact")

    def facts(self) -> dict[str, Any]:
        """The facts the case gives, by name, in field order."""
        return {f.name: v for f in fields(self) if (v := getattr(self, f.name)) is not None}


@dataclass(frozen=True, slots=True)
class RuleTests:
    """A rule's own test cases: flows that must classify to it, and flows that must not."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID
    match: Annotated[list[RuleCase], NonEmpty]
    no_match: Annotated[list[RuleCase], NonEmpty]


@dataclass(frozen=True, slots=True)
class Rule:
    """One classification rule (`validate_rule` makes one of a pack's mapping)."""

    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID
    id: RuleId
    vendor: Text
    app: Text
    """The app(s) the rule is about, or `any` for a vendor-wide rule."""
    category: Category
    confidence: Annotated[float, _Pydantic("Field", ge=0.0, le=1.0)]
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

    def __post_init__(self) -> None:
        if self.match.local and self.match.name_conditions():
            raise ValueError("a local rule (local: true) cannot match on destination names")
        if self.match.local != (self.category == "local_link"):
            raise ValueError("category local_link and local: true go together")
        if self.responder is not None and not self.match.local:
            raise ValueError("responder (aircraft or ground_station) is for local rules only")


@dataclass(frozen=True, slots=True)
class _PackHeader:
    __pydantic_config__: ClassVar[dict[str, Any]] = _FORBID
    pack: Annotated[StrictStr, _Pydantic("Field", pattern=r"^[a-z][a-z0-9_-]*$")]
    version: StrictInt | StrictStr
    description: Text
    rules: Annotated[list[Any], NonEmpty]


@functools.cache
def _adapter(cls: type) -> Any:
    """The pydantic validator of one of the types above, made at its first use."""
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


def _with_severity(data: Any) -> Any:
    """A rule's mapping with the severity of its category where it sets none (an unknown
    category is reported on its own: no missing-severity error is added)."""
    if isinstance(data, dict) and "severity" not in data:
        return {**data, "severity": DEFAULT_SEVERITY.get(str(data.get("category")), "medium")}
    return data


def validate_rule(data: Any) -> Rule:
    """The rule of a pack's mapping, validated (pydantic's ValidationError when it is not)."""
    rule: Rule = _adapter(Rule).validate_python(_with_severity(data))
    return rule


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
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
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
    from pydantic import ValidationError

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
        header: _PackHeader = _adapter(_PackHeader).validate_python(data)
    except ValidationError as exc:
        for err in exc.errors():
            issues.append(LintIssue(path, _line_of(err["loc"], lines), _message(err)))
        return None
    rules: list[tuple[Rule, RuleOrigin]] = []
    for i, raw in enumerate(header.rules):
        try:
            rule = validate_rule(raw)
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
        for part in (__version__, _pydantic_version(), sys.version):
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


def _pydantic_version() -> str:
    """The installed pydantic's version, read without importing it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pydantic")
    except PackageNotFoundError:
        return ""


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
