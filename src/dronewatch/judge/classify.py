"""The classifier: which vendor, app and category a flow belongs to, from the loaded rule packs.

Facts come from what analyzers publish in `flow.meta` (names, HTTP path, MQTT topics, JA4, drone
link) plus the 5-tuple. The most specific matching rule wins: an exact host beats a glob, a glob
beats a suffix (apex) rule, a deeper suffix beats a shallower one, any name beats none; then the
rule with more conditions (host + http_path beats the host alone), then the higher confidence,
then the rule loaded first.

Lookups are indexed: exact names in a dict, suffix rules by walking the name's parent domains,
globs bucketed under their literal tail and compiled once, rules without names by responder port
and by link. The rule hits of each name are memoised, since many flows share a name.

Flows no rule matches can get a behavioural label (`behavioural_label`): a sustained upload, a
long-lived periodic beacon, or merely unclassified.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from dronewatch.core.flow import Flow
from dronewatch.exceptions import GeoIPError
from dronewatch.geoip.local import builtin_local_nets
from dronewatch.judge.rulepack import (
    LintIssue,
    Rule,
    RuleCase,
    RuleSet,
    load_packs,
    parse_port_spec,
)

logger = logging.getLogger(__name__)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NAME_EXACT = 3
NAME_GLOB = 2
NAME_SUFFIX = 1
NAME_NONE = 0

FACT_NAME_FIELDS = ("sni", "quic_sni", "http_host", "dns_name")
"""Single-valued name facts, in the order they are trusted."""

_LOCAL = builtin_local_nets()
"""The built-in table of local ranges (`dronewatch.geoip.local`), the one the resolver uses too."""

_COMPATIBLE = frozenset(
    {
        *(("host", f) for f in (*FACT_NAME_FIELDS, "dns_query")),
        *((f, f) for f in FACT_NAME_FIELDS),
        ("dns_name", "dns_query"),
    }
)
"""(rule field, fact field) pairs a name condition may match on."""


# --- facts ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def normalize_name(name: str | None) -> str | None:
    """Lower-case a destination name, drop a trailing dot and, for HTTP Host, the port."""
    if not name:
        return None
    name = name.strip().lower()
    if name.startswith("["):  # [v6]:port
        end = name.find("]")
        name = name[1:end] if end > 0 else name
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    name = name.rstrip(".")
    return name or None


def _meta_hex(meta: dict[str, str | list[str]], key: str) -> bytes:
    value = meta.get(key)
    if not isinstance(value, str):
        return b""
    try:
        return bytes.fromhex(value)
    except ValueError:
        return b""


def _meta_str(meta: Mapping[str, str | list[str]], key: str) -> str | None:
    value = meta.get(key)
    if isinstance(value, str):
        return value or None
    if isinstance(value, list) and value:
        return value[0]
    return None


def _meta_list(meta: Mapping[str, str | list[str]], key: str) -> tuple[str, ...]:
    value = meta.get(key)
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, str) and value:
        return (value,)
    return ()


@dataclass(frozen=True, slots=True)
class FlowFacts:
    """What the classifier reads off a flow. Names are normalised on construction."""

    sni: str | None = None
    quic_sni: str | None = None
    http_host: str | None = None
    dns_name: str | None = None
    """The responder's name, from the DNS answers seen earlier."""
    dns_query: tuple[str, ...] = ()
    """Names the flow asked DNS for (a DNS flow)."""
    http_path: str | None = None
    mqtt_topics: tuple[str, ...] = ()
    resp_p: int | None = None
    proto: str | None = None
    """tcp, udp, icmp..."""
    resp_ip: str | None = None
    resp_local: bool | None = None
    """Whether the responder is on the local network, as the run decides it (the GeoIP
    resolver's local networks, with the user's subnets: `Monitor.settle` passes its scope);
    None when the address is unknown. Made from the built-in ranges when not given."""
    asn: int | None = None
    """Autonomous system of the responder, from GeoIP."""
    ja4: str | None = None
    link: str | None = None
    service: str | None = None
    payload: bytes = b""
    """The flow's first payload bytes: meta `first_payload` (the local-link analyzer keeps them
    for flows between two local hosts), or what the caller passes."""

    def __post_init__(self) -> None:
        if self.resp_local is None and self.resp_ip:
            object.__setattr__(self, "resp_local", is_local_address(self.resp_ip))
        for key in FACT_NAME_FIELDS:
            raw = getattr(self, key)
            if raw is not None:
                object.__setattr__(self, key, normalize_name(raw))
        if self.dns_query:
            names = (normalize_name(q) for q in self.dns_query)
            object.__setattr__(self, "dns_query", tuple(n for n in names if n))

    @classmethod
    def from_flow(
        cls,
        flow: Flow,
        *,
        asn: int | None = None,
        payload: bytes = b"",
        resp_local: bool | None = None,
    ) -> FlowFacts:
        """The facts of a flow, from its 5-tuple and what the analyzers put in `flow.meta`;
        `resp_local`: whether the run takes the responder for local (else the built-in
        ranges decide)."""
        meta = flow.meta
        return cls(
            sni=_meta_str(meta, "sni"),
            quic_sni=_meta_str(meta, "quic_sni"),
            http_host=_meta_str(meta, "http_host"),
            dns_name=_meta_str(meta, "dns_name"),
            dns_query=_meta_list(meta, "dns_query"),
            http_path=_meta_str(meta, "http_path"),
            mqtt_topics=_meta_list(meta, "mqtt_topics"),
            resp_p=flow.resp_p,
            proto=flow.proto_name,
            resp_ip=flow.resp_ip or None,
            resp_local=resp_local if resp_local is not None else _local_packed(flow.resp_h),
            asn=asn,
            ja4=_meta_str(meta, "ja4"),
            link=_meta_str(meta, "link"),
            service=flow.service or None,
            payload=payload or _meta_hex(meta, "first_payload"),
        )

    @classmethod
    def from_case(cls, case: RuleCase) -> FlowFacts:
        """The facts described by a rule's test case."""
        return cls(
            sni=case.sni,
            quic_sni=case.quic_sni,
            http_host=case.http_host,
            dns_name=case.dns_name,
            dns_query=tuple(case.dns_query or ()),
            http_path=case.http_path,
            mqtt_topics=tuple(case.mqtt_topics or ()),
            resp_p=case.resp_p,
            proto=case.proto,
            resp_ip=case.resp_ip,
            asn=case.asn,
            ja4=case.ja4,
            link=case.link,
            service=case.service,
            payload=bytes.fromhex(case.payload) if case.payload else b"",
        )

    def names(self) -> list[tuple[str, str]]:
        """Every (fact field, name) pair the flow carries."""
        out = [(key, name) for key in FACT_NAME_FIELDS if (name := getattr(self, key))]
        out.extend(("dns_query", q) for q in self.dns_query)
        return out


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_local_address(text: str | None) -> bool | None:
    """True for an address on the local network (`dronewatch.geoip.local`'s built-in ranges),
    None when unknown."""
    return _is_local(text) if text else None


def _local_packed(addr: bytes) -> bool | None:
    """`is_local_address` of a flow's packed address (`ip_str` of it), without the text."""
    if len(addr) not in (4, 16):
        return None
    return _LOCAL.reason(addr) is not None


@functools.lru_cache(maxsize=4096)
def _is_local(text: str) -> bool | None:
    try:
        return _LOCAL.is_local(text)
    except GeoIPError:
        return None


# --- results ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Classification:
    """What a flow was taken for, and why. A new object on every call: safe to change."""

    rule_id: str
    vendor: str
    app: str
    category: str
    confidence: float
    evidence: str
    """The rule's evidence tag: E, E-w or I."""
    source: str
    severity: str
    matched: dict[str, str] = field(default_factory=dict)
    """Flow fact -> the value that matched, e.g. {"sni": "flysafe-api.dji.com"}."""
    behavioural: bool = False
    """True for a label guessed from flow counters, not from a rule."""
    description: str = ""
    local: bool = False
    """The rule describes a local drone-link flow."""
    responder: str | None = None
    """For a local rule: aircraft or ground_station, the end the responder is."""


@dataclass(frozen=True, slots=True)
class BehaviourOptions:
    """Thresholds of the behavioural labels given to flows no rule matched."""

    upload_min_bytes: int = 1_000_000
    """A sustained upload: the originator sent more than this many IP bytes..."""
    upload_ratio: float = 4.0
    """...and more than this many times what it received."""
    beacon_min_duration_s: float = 60.0
    """A periodic beacon lasts at least this long..."""
    beacon_min_pkts: int = 5
    """...with at least this many originator packets..."""
    beacon_max_mean_bytes: float = 300.0
    """...of at most this many IP bytes on average..."""
    beacon_min_interval_s: float = 1.0
    """...spread out: on average at least this far apart."""


@dataclass(frozen=True, slots=True)
class ClassifierOptions:
    """Tunables of the classifier."""

    name_cache_size: int = 8192
    """Destination names whose rule hits are memoised (least recently used are dropped)."""
    facts_cache_size: int = 8192
    """Distinct sets of flow facts whose best rule is memoised (the memo starts anew when full):
    the flows of one app to one destination repeat the same facts."""
    behaviour: BehaviourOptions = field(default_factory=BehaviourOptions)
    """Thresholds of the behavioural labels."""


def _behaviour(rule_id: str, confidence: float, severity: str, description: str) -> Classification:
    return Classification(
        rule_id=rule_id,
        vendor="unknown",
        app="unknown",
        category="other",
        confidence=confidence,
        evidence="I",
        source="behaviour: flow byte and packet counters",
        severity=severity,
        behavioural=True,
        description=description,
    )


def behavioural_label(
    flow: Flow, options: BehaviourOptions | None = None, *, resp_local: bool | None = None
) -> Classification | None:
    """A label from a flow's shape alone, for a flow no rule matched.

    None when the responder is on the local network (nothing left the device; `resp_local`: as
    the run decides it, else the built-in ranges decide). TCP/UDP flows that
    upload much more than they receive are `behaviour.sustained_upload`; long-lived flows of small,
    spread-out packets are `behaviour.periodic_beacon`; anything else is `behaviour.unclassified`.
    """
    opts = options or BehaviourOptions()
    if resp_local if resp_local is not None else is_local_address(flow.resp_ip):
        return None
    if flow.proto_name in ("tcp", "udp"):
        sent, received = flow.orig_bytes, flow.resp_bytes
        if sent > opts.upload_min_bytes and sent > opts.upload_ratio * received:
            return _behaviour(
                "behaviour.sustained_upload",
                0.3,
                "medium",
                "sustained upload: possible media or flight-log sync",
            )
        pkts = flow.orig_pkts
        duration = flow.duration_s
        if (
            duration >= opts.beacon_min_duration_s
            and pkts >= opts.beacon_min_pkts
            and sent / pkts <= opts.beacon_max_mean_bytes
            and duration / (pkts - 1) >= opts.beacon_min_interval_s
        ):
            return _behaviour(
                "behaviour.periodic_beacon",
                0.2,
                "low",
                "periodic beacon: small packets over a long-lived flow, possible telemetry",
            )
    return _behaviour("behaviour.unclassified", 0.1, "low", "no rule matched this flow")


# --- compiled rules ---------------------------------------------------------------------------


def _host_glob_regex(pattern: str) -> re.Pattern[str]:
    """A host glob as a regex; `*` and `?` stay within one DNS label."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append("[^.]*")
        elif ch == "?":
            out.append("[^.]")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _glob_tail(pattern: str) -> str:
    """The literal labels after a glob's last wildcard label: its index bucket."""
    labels = pattern.split(".")
    last_wild = max(i for i, lab in enumerate(labels) if "*" in lab or "?" in lab)
    return ".".join(labels[last_wild + 1 :])


def _path_matcher(pattern: str) -> Callable[[str], bool]:
    if any(ch in pattern for ch in "*?["):
        rx = re.compile(fnmatch.translate(pattern))
        return lambda path: rx.match(path) is not None
    prefix = pattern

    def prefix_match(path: str) -> bool:
        if not path.startswith(prefix):
            return False
        # A prefix ends at a path-segment boundary: /apiv1/update matches /apiv1/update/x only.
        return len(path) == len(prefix) or prefix.endswith("/") or path[len(prefix)] in "/;"

    return prefix_match


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether an MQTT topic matches a filter with `+` (one level) and `#` (the rest)."""
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    # MQTT 3.1.1 section 4.7.2: a filter starting with a wildcard does not match `$` topics.
    if topic.startswith("$") and f_levels[0] in ("+", "#"):
        return False
    for i, level in enumerate(f_levels):
        if level == "#":
            return True
        if i >= len(t_levels):
            return False
        if level != "+" and level != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


@dataclass(slots=True)
class _Compiled:
    """One rule, its non-name conditions made ready to test."""

    index: int
    rule: Rule
    name_fields: frozenset[str]
    ports: tuple[tuple[int, int], ...] | None
    proto: str | None
    nets: tuple[IpNetwork, ...] | None
    asns: frozenset[int] | None
    ja4: frozenset[str] | None
    payload: bytes | None
    link: str | None
    service: str | None
    paths: tuple[Callable[[str], bool], ...] | None
    topics: tuple[str, ...] | None
    local: bool
    conditions: int

    @classmethod
    def build(cls, index: int, rule: Rule) -> _Compiled:
        m = rule.match
        return cls(
            index=index,
            rule=rule,
            name_fields=frozenset(m.name_conditions()),
            ports=tuple(parse_port_spec(p) for p in m.ports) if m.ports else None,
            proto=m.proto,
            nets=tuple(ipaddress.ip_network(n) for n in m.ip) if m.ip else None,
            asns=frozenset(m.asn) if m.asn else None,
            ja4=frozenset(m.ja4) if m.ja4 else None,
            payload=bytes.fromhex(m.payload_prefix) if m.payload_prefix else None,
            link=m.link,
            service=m.service,
            paths=tuple(_path_matcher(p) for p in m.http_path) if m.http_path else None,
            topics=tuple(m.mqtt_topic) if m.mqtt_topic else None,
            local=m.local,
            conditions=len(m.conditions()),
        )

    def check(self, f: FlowFacts, matched: dict[str, str]) -> bool:
        """Test every condition but the names; fill `matched` with what matched."""
        if self.ports is not None:
            p = f.resp_p
            if p is None or not any(lo <= p <= hi for lo, hi in self.ports):
                return False
            matched["resp_p"] = str(p)
        if self.proto is not None:
            if f.proto != self.proto:
                return False
            matched["proto"] = self.proto
        if self.link is not None:
            if f.link != self.link:
                return False
            matched["link"] = self.link
        if self.service is not None:
            if f.service != self.service:
                return False
            matched["service"] = self.service
        if self.local and f.resp_local is False:
            return False
        if self.nets is not None:
            addr = _address(f.resp_ip) if f.resp_ip else None
            if addr is None or not any(addr in net for net in self.nets):
                return False
            matched["resp_ip"] = str(addr)
        if self.asns is not None:
            if f.asn is None or f.asn not in self.asns:
                return False
            matched["asn"] = str(f.asn)
        if self.ja4 is not None:
            if f.ja4 is None or f.ja4 not in self.ja4:
                return False
            matched["ja4"] = f.ja4
        if self.payload is not None:
            if not f.payload.startswith(self.payload):
                return False
            matched["payload_prefix"] = self.payload.hex()
        if self.paths is not None:
            if not f.http_path:
                return False
            path = f.http_path.split("?", 1)[0].split("#", 1)[0]
            if not any(test(path) for test in self.paths):
                return False
            matched["http_path"] = f.http_path
        if self.topics is not None:
            hit = next(
                (t for t in f.mqtt_topics if any(topic_matches(flt, t) for flt in self.topics)),
                None,
            )
            if hit is None:
                return False
            matched["mqtt_topics"] = hit
        return True


_NameHit = tuple[int, str, int, int]
"""(rule index, rule field, kind, weight) for one name."""


class Classifier:
    """Classify flows with a rule set: `classify(flow)` or `classify_facts(facts)`."""

    def __init__(self, ruleset: RuleSet, options: ClassifierOptions | None = None) -> None:
        self.ruleset = ruleset
        self.options = options or ClassifierOptions()
        self._rules = [_Compiled.build(i, r) for i, r in enumerate(ruleset.rules)]
        self._exact: dict[str, list[tuple[int, str]]] = {}
        self._suffix: dict[str, list[tuple[int, str]]] = {}
        self._globs: dict[str, list[tuple[re.Pattern[str], int, str, int]]] = {}
        self._by_port: dict[int, list[int]] = {}
        self._port_ranges: list[tuple[int, int, int]] = []
        self._by_link: dict[str, list[int]] = {}
        self._by_service: dict[str, list[int]] = {}
        self._unindexed: list[int] = []
        for c in self._rules:
            self._index(c)
        self._ports = frozenset(self._by_port).union(
            *(range(lo, hi + 1) for lo, hi, _ in self._port_ranges)
        )
        """Every port some rule without a name condition names."""
        self._hits: Callable[[str], tuple[_NameHit, ...]] = functools.lru_cache(
            maxsize=self.options.name_cache_size
        )(self._name_hits)
        self._best: dict[FlowFacts, tuple[Rule, dict[str, str]] | None] = {}
        """Memo of `_best_rule`: facts -> the rule that matched and what it matched."""
        self._by_flow: dict[tuple[object, ...], tuple[Rule, dict[str, str]] | None] = {}
        """The same, by what `classify` reads off a flow before it makes its facts."""
        self._by_name: dict[str, tuple[Rule, dict[str, str]] | None] = {}
        """The same, for a name alone (`classify_name`)."""
        self._by_kind: dict[tuple[object, ...], tuple[Rule, dict[str, str]] | None] = {}
        """The same again, for flows whose rules read of the responder's address only whether
        it is local: by what `classify` reads but the address and the AS number, and that one
        bit. A flood of flows to as many addresses (a scan) is then classified once per port."""

    @classmethod
    def load(
        cls, dirs: Sequence[Path] = (), options: ClassifierOptions | None = None
    ) -> Classifier:
        """A classifier over the bundled packs plus the user pack directories `dirs`.

        Raises:
            RulePackLintError: (a RulePackError) listing every problem in the packs.
        """
        return cls(load_packs(dirs), options)

    def _index(self, c: _Compiled) -> None:
        m = c.rule.match
        if c.name_fields:
            for rfield in c.name_fields:
                patterns: list[str] = getattr(m, rfield)
                for pat in patterns:
                    if pat.startswith("."):
                        self._suffix.setdefault(pat[1:], []).append((c.index, rfield))
                    elif "*" in pat or "?" in pat:
                        literal = len(pat.replace("*", "").replace("?", ""))
                        entry = (_host_glob_regex(pat), c.index, rfield, literal)
                        self._globs.setdefault(_glob_tail(pat), []).append(entry)
                    else:
                        self._exact.setdefault(pat, []).append((c.index, rfield))
        elif c.ports is not None:
            for lo, hi in c.ports:
                if hi - lo < 64:
                    for port in range(lo, hi + 1):
                        self._by_port.setdefault(port, []).append(c.index)
                else:
                    self._port_ranges.append((lo, hi, c.index))
        elif c.link is not None:
            self._by_link.setdefault(c.link, []).append(c.index)
        elif c.service is not None:
            self._by_service.setdefault(c.service, []).append(c.index)
        else:
            self._unindexed.append(c.index)

    def _name_hits(self, name: str) -> tuple[_NameHit, ...]:
        """Every name condition of every rule that this name satisfies."""
        hits: list[_NameHit] = [(i, f, NAME_EXACT, 0) for i, f in self._exact.get(name, ())]
        parent = name
        while True:
            labels = parent.count(".") + 1
            hits.extend((i, f, NAME_SUFFIX, labels) for i, f in self._suffix.get(parent, ()))
            for rx, i, f, literal in self._globs.get(parent, ()):
                if rx.fullmatch(name):
                    hits.append((i, f, NAME_GLOB, literal))
            dot = parent.find(".")
            if dot < 0:
                return tuple(hits)
            parent = parent[dot + 1 :]

    def classify(
        self,
        flow: Flow,
        *,
        asn: int | None = None,
        payload: bytes = b"",
        queries: bool = True,
        resp_local: bool | None = None,
    ) -> Classification | None:
        """The best rule for a flow, or None when no rule matches; `queries=False` leaves the
        names the flow asked DNS for out of its facts (a lookup is not traffic to the name);
        `resp_local`: whether the run takes the responder for local (`FlowFacts.resp_local`)."""
        meta = flow.meta
        # What `FlowFacts.from_flow` reads, raw: the memo is asked before any facts are made.
        # A flow nobody published a fact on (a scan's SYN, most short flows) skips the reads.
        facts_of = [_hashable(meta.get(name)) for name in _FLOW_META] if meta else _NO_FACTS
        if not queries and facts_of is not _NO_FACTS:
            facts_of[_DNS_QUERY] = None  # not among the facts: one memo entry for every lookup
        local = resp_local if resp_local is not None else _local_packed(flow.resp_h)
        head = (*facts_of, flow.resp_p, flow.proto, flow.service, payload, queries, local)
        # A flow without a name to a port no rule names: the rules it may match (by link,
        # service or none of those) have no port condition (`_index`), so any such port is one.
        port: int | None = flow.resp_p
        if port not in self._ports and (
            not meta or not any(facts_of[i] is not None for i in _NAME_META)
        ):
            port = None
        kind = (*facts_of, port, flow.proto, flow.service, payload, queries, local)
        hit = self._by_kind.get(kind, _MISS)
        if hit is not _MISS:
            return _result(hit)  # type: ignore[arg-type]
        key = (*head, flow.resp_h, asn)
        try:
            best = self._by_flow[key]
        except KeyError:
            facts = FlowFacts.from_flow(flow, asn=asn, payload=payload, resp_local=local)
            if not queries:
                facts = replace(facts, dns_query=())
            best = self._best_for(facts)
            size = self.options.facts_cache_size
            if len(self._by_flow) >= size:
                self._by_flow.clear()
            self._by_flow[key] = best
            if not self._reads_address(facts):
                if len(self._by_kind) >= size:
                    self._by_kind.clear()
                self._by_kind[kind] = best
        return _result(best)

    def _reads_address(self, facts: FlowFacts) -> bool:
        """Whether a rule that may match these facts reads the responder's address past whether
        it is local (an `ip` or `asn` condition): every rule `_best_rule` checks for them."""
        rules = self._rules
        candidates = [i for _, name in facts.names() for i, _, _, _ in self._hits(name)]
        port = facts.resp_p
        if port is not None:
            candidates.extend(self._by_port.get(port, ()))
            candidates.extend(i for lo, hi, i in self._port_ranges if lo <= port <= hi)
        if facts.link is not None:
            candidates.extend(self._by_link.get(facts.link, ()))
        if facts.service is not None:
            candidates.extend(self._by_service.get(facts.service, ()))
        candidates.extend(self._unindexed)
        return any(rules[i].nets is not None or rules[i].asns is not None for i in candidates)

    def classify_name(self, name: str) -> Classification | None:
        """The best rule for a destination name alone (e.g. a DNS query)."""
        hit = self._by_name.get(name, _MISS)
        if hit is not _MISS:
            return _result(hit)  # type: ignore[arg-type]
        norm = normalize_name(name)
        if norm is None or not self._hits(norm):
            # No rule names it: only the rules without a name, port, link or service condition
            # can match, and they read nothing of a name alone, so every such name gets the
            # answer of no facts at all (a flood of lookups of new names: most of them).
            best = self._best_for(_NO_NAME)
        else:
            best = self._best_for(FlowFacts(dns_query=(name,)))
        if len(self._by_name) >= self.options.facts_cache_size:
            self._by_name.clear()
        self._by_name[name] = best
        return _result(best)

    def classify_facts(self, facts: FlowFacts) -> Classification | None:
        """The best rule for a set of flow facts, or None when no rule matches."""
        return _result(self._best_for(facts))

    def _best_for(self, facts: FlowFacts) -> tuple[Rule, dict[str, str]] | None:
        try:
            return self._best[facts]
        except KeyError:
            best = self._best_rule(facts)
            if len(self._best) >= self.options.facts_cache_size:
                self._best.clear()
            self._best[facts] = best
            return best

    def _best_rule(self, facts: FlowFacts) -> tuple[Rule, dict[str, str]] | None:
        """The rule `classify_facts` picks, with the facts' values that matched it."""
        # rule index -> rule field -> (kind, weight, fact field, name) of its best name hit
        named: dict[int, dict[str, tuple[int, int, str, str]]] = {}
        for ffield, name in facts.names():
            for idx, rfield, kind, weight in self._hits(name):
                if (rfield, ffield) not in _COMPATIBLE:
                    continue
                per = named.setdefault(idx, {})
                cur = per.get(rfield)
                if cur is None or (kind, weight) > cur[:2]:
                    per[rfield] = (kind, weight, ffield, name)
        others: list[int] = []
        port = facts.resp_p
        if port is not None:
            others.extend(self._by_port.get(port, ()))
            others.extend(i for lo, hi, i in self._port_ranges if lo <= port <= hi)
        if facts.link is not None:
            others.extend(self._by_link.get(facts.link, ()))
        if facts.service is not None:
            others.extend(self._by_service.get(facts.service, ()))
        others.extend(self._unindexed)

        best: tuple[int, int, int, float, int] | None = None
        best_match: tuple[_Compiled, dict[str, str]] | None = None
        for idx, per in named.items():
            c = self._rules[idx]
            if len(per) != len(c.name_fields):
                continue  # some name condition of the rule has no hit
            matched = {ffield: name for _, _, ffield, name in per.values()}
            if not c.check(facts, matched):
                continue
            kind, weight = max((k, w) for k, w, _, _ in per.values())
            key = (kind, weight, c.conditions, c.rule.confidence, -idx)
            if best is None or key > best:
                best, best_match = key, (c, matched)
        for idx in others:
            c = self._rules[idx]
            matched = {}
            if not c.check(facts, matched):
                continue
            key = (NAME_NONE, 0, c.conditions, c.rule.confidence, -idx)
            if best is None or key > best:
                best, best_match = key, (c, matched)
        if best_match is None:
            return None
        c, matched = best_match
        return c.rule, matched

    def behavioural_label(
        self, flow: Flow, *, resp_local: bool | None = None
    ) -> Classification | None:
        """A behavioural label for a flow no rule matched (see `behavioural_label`)."""
        return behavioural_label(flow, self.options.behaviour, resp_local=resp_local)

    behavioural = behavioural_label

    def cache_info(self) -> str:
        """Hit statistics of the per-name memo."""
        info = getattr(self._hits, "cache_info", None)
        return str(info()) if info is not None else ""


_NO_NAME = FlowFacts()
"""The facts of a name no rule names, as far as the rules can tell (`classify_name`)."""

_FLOW_META = (
    "first_payload",
    "sni",
    "quic_sni",
    "http_host",
    "dns_name",
    "dns_query",
    "http_path",
    "mqtt_topics",
    "ja4",
    "link",
)
"""The `flow.meta` keys `FlowFacts.from_flow` reads."""
_NO_FACTS = [None] * len(_FLOW_META)
"""What those keys give a flow with an empty meta (read only)."""
_NAME_META = tuple(_FLOW_META.index(k) for k in (*FACT_NAME_FIELDS, "dns_query"))
"""Where the name facts are among them."""
_DNS_QUERY = _FLOW_META.index("dns_query")


_MISS = object()
"""What a memo's `get` answers for a key it does not hold (None is an answer: no rule)."""


def _hashable(value: str | list[str] | None) -> object:
    return tuple(value) if isinstance(value, list) else value


def _result(best: tuple[Rule, dict[str, str]] | None) -> Classification | None:
    """A new classification for a memoised best rule (callers may change what they get)."""
    if best is None:
        return None
    rule, matched = best
    return _classification(rule, dict(matched))


def _classification(rule: Rule, matched: dict[str, str]) -> Classification:
    return Classification(
        rule_id=rule.id,
        vendor=rule.vendor,
        app=rule.app,
        category=rule.category,
        confidence=rule.confidence,
        evidence=rule.evidence,
        source=rule.source,
        severity=rule.severity,
        matched=matched,
        behavioural=False,
        description=rule.description,
        local=rule.match.local,
        responder=rule.responder,
    )


def check_rule_tests(ruleset: RuleSet, classifier: Classifier | None = None) -> list[LintIssue]:
    """Run every rule's test cases: each `match` case must classify to exactly that rule, and no
    `no_match` case may. Returns one issue per failing case, at the case's line."""
    clf = classifier or Classifier(ruleset)
    issues: list[LintIssue] = []
    for rule in ruleset.rules:
        origin = ruleset.origins.get(rule.id)
        path = origin.path if origin is not None else Path("<memory>")
        for kind, cases, lines in (
            ("match", rule.tests.match, origin.match_lines if origin else ()),
            ("no_match", rule.tests.no_match, origin.no_match_lines if origin else ()),
        ):
            for i, case in enumerate(cases):
                got = clf.classify_facts(FlowFacts.from_case(case))
                got_id = got.rule_id if got is not None else None
                if (kind == "match") == (got_id == rule.id):
                    continue
                line = lines[i] if i < len(lines) else (origin.line if origin else 0)
                facts = _case_text(case)
                if kind == "match":
                    msg = (
                        f"{rule.id}: match case {i + 1} ({facts}) classified as "
                        f"{got_id or 'nothing'}, expected {rule.id}"
                    )
                else:
                    msg = f"{rule.id}: no_match case {i + 1} ({facts}) classified as {rule.id}"
                issues.append(LintIssue(path, line, msg))
    return issues


def _case_text(case: RuleCase) -> str:
    items: Iterable[tuple[str, object]] = case.facts().items()
    return ", ".join(f"{k}={v}" for k, v in items)


__all__ = [
    "BehaviourOptions",
    "Classification",
    "Classifier",
    "ClassifierOptions",
    "FlowFacts",
    "behavioural_label",
    "check_rule_tests",
    "is_local_address",
    "normalize_name",
    "topic_matches",
]
