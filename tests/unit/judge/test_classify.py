"""The classifier: precedence, each condition kind, facts from flows, behavioural labels."""

from __future__ import annotations

import dataclasses
from functools import cache
from pathlib import Path

import pytest

from dronewatch.core.flow import IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, Flow
from dronewatch.exceptions import RulePackError
from dronewatch.judge import classify as classify_module
from dronewatch.judge.classify import (
    BehaviourOptions,
    Classifier,
    ClassifierOptions,
    FlowFacts,
    behavioural_label,
    check_rule_tests,
    is_local_address,
    normalize_name,
    topic_matches,
)
from dronewatch.judge.rulepack import Rule, RuleSet, load_packs, validate_rule
from tests.factories import ip


def make_rule(rule_id: str, match: dict[str, object], **fields: object) -> Rule:
    """A rule with placeholder metadata and trivial test cases."""
    data: dict[str, object] = {
        "id": rule_id,
        "vendor": "Acme",
        "app": "any",
        "category": "other",
        "confidence": 0.5,
        "evidence": "I",
        "source": "S1",
        "description": rule_id,
        "match": match,
        "tests": {"match": [{"sni": "placeholder"}], "no_match": [{"sni": "placeholder"}]},
    }
    data.update(fields)
    return validate_rule(data)


def classifier(*rules: Rule) -> Classifier:
    """A classifier over the given rules only."""
    return Classifier(RuleSet.of(rules))


def rule_id(clf: Classifier, **facts: object) -> str | None:
    """The id of the rule the facts classify to."""
    result = clf.classify_facts(FlowFacts(**facts))  # type: ignore[arg-type]
    return result.rule_id if result is not None else None


def make_test_flow(
    resp: str = "203.0.113.10",
    *,
    proto: int = IP_PROTO_TCP,
    resp_p: int = 443,
    meta: dict[str, str | list[str]] | None = None,
    orig_bytes: int = 1000,
    resp_bytes: int = 1000,
    orig_pkts: int = 10,
    duration_s: float = 1.0,
) -> Flow:
    """A finished flow from a local phone to `resp`."""
    flow = Flow(
        uid="CFLOW",
        proto=proto,
        orig_h=ip("192.168.1.3"),
        orig_p=50000,
        resp_h=ip(resp),
        resp_p=resp_p,
        first_ts=1_700_000_000.0,
        last_ts=1_700_000_000.0 + duration_s,
        orig_pkts=orig_pkts,
        orig_bytes=orig_bytes,
        resp_pkts=10,
        resp_bytes=resp_bytes,
    )
    flow.meta = dict(meta or {})  # its own: a flow without facts shares a read-only one
    return flow


@cache
def bundled() -> Classifier:
    """A classifier over the bundled packs, built once."""
    return Classifier(load_packs())


# --- names and precedence -----------------------------------------------------------------------


def test_exact_beats_glob_beats_suffix() -> None:
    """An exact host rule beats a glob, and a glob beats a suffix rule, whatever the order."""
    clf = classifier(
        make_rule("t.suffix", {"host": [".acme.example"]}, confidence=0.99),
        make_rule("t.glob", {"host": ["light-*.acme.example"]}, confidence=0.9),
        make_rule("t.exact", {"host": ["light-1.acme.example"]}, confidence=0.1),
    )
    assert rule_id(clf, sni="light-1.acme.example") == "t.exact"
    assert rule_id(clf, sni="light-2.acme.example") == "t.glob"
    assert rule_id(clf, sni="dark-2.acme.example") == "t.suffix"
    assert rule_id(clf, sni="acme.example") == "t.suffix"  # the apex itself
    assert rule_id(clf, sni="notacme.example") is None


def test_deeper_suffix_and_longer_glob_win() -> None:
    """Among suffix rules the deeper one wins; among globs the one with more literal text."""
    clf = classifier(
        make_rule("t.apex", {"host": [".acme.example"]}),
        make_rule("t.tiles", {"host": [".tiles.acme.example"]}),
        make_rule("t.any", {"host": ["*.cdn.acme.example"]}),
        make_rule("t.img", {"host": ["img-*.cdn.acme.example"]}),
    )
    assert rule_id(clf, sni="a.tiles.acme.example") == "t.tiles"
    assert rule_id(clf, sni="x.acme.example") == "t.apex"
    assert rule_id(clf, sni="img-3.cdn.acme.example") == "t.img"
    assert rule_id(clf, sni="video.cdn.acme.example") == "t.any"


def test_glob_star_stays_within_one_label() -> None:
    """A host glob's `*` does not cross a dot; `?` is exactly one character."""
    clf = classifier(
        make_rule("t.glob", {"host": ["light-*.acme.example"]}),
        make_rule("t.one", {"host": ["img-?.acme.example"]}),
    )
    assert rule_id(clf, sni="light-a.acme.example") == "t.glob"
    assert rule_id(clf, sni="light-a.b.acme.example") is None
    assert rule_id(clf, sni="img-7.acme.example") == "t.one"
    assert rule_id(clf, sni="img-77.acme.example") is None


def test_rule_with_two_name_conditions_needs_both() -> None:
    """A rule naming both an SNI and a DNS name matches only when both facts fit."""
    clf = classifier(
        make_rule("t.both", {"sni": ["front.acme.example"], "dns_name": [".cdn.example"]})
    )
    assert rule_id(clf, sni="front.acme.example", dns_name="x1.cdn.example") == "t.both"
    assert rule_id(clf, sni="front.acme.example") is None
    assert rule_id(clf, sni="front.acme.example", dns_name="x1.other.example") is None


def test_facts_from_flow_meta_of_either_shape() -> None:
    """Meta values given as a list or a single string both become facts."""
    flow = make_test_flow(
        meta={
            "sni": ["api.acme.example"],
            "dns_query": "q.acme.example",
            "mqtt_topics": ["thing/product/SN/osd"],
            "link": "mavlink",
        }
    )
    facts = FlowFacts.from_flow(flow)
    assert facts.sni == "api.acme.example"
    assert facts.dns_query == ("q.acme.example",)
    assert facts.link == "mavlink" and facts.proto == "tcp" and facts.resp_p == 443
    assert facts.resp_ip == "203.0.113.10" and facts.mqtt_topics == ("thing/product/SN/osd",)
    assert FlowFacts.from_flow(make_test_flow()).mqtt_topics == ()


def test_ties_go_to_more_conditions_then_confidence_then_order() -> None:
    """Same host: the rule with more conditions wins, then higher confidence, then load order."""
    clf = classifier(
        make_rule("t.first", {"host": ["api.acme.example"]}, confidence=0.5),
        make_rule("t.second", {"host": ["api.acme.example"]}, confidence=0.5),
        make_rule("t.sure", {"host": ["api.acme.example"]}, confidence=0.8),
        make_rule("t.path", {"host": ["api.acme.example"], "http_path": ["/logs"]}, confidence=0.1),
    )
    assert rule_id(clf, sni="api.acme.example") == "t.sure"
    assert rule_id(clf, http_host="api.acme.example", http_path="/logs/upload") == "t.path"
    clf = classifier(
        make_rule("t.first", {"host": ["api.acme.example"]}),
        make_rule("t.second", {"host": ["api.acme.example"]}),
    )
    assert rule_id(clf, sni="api.acme.example") == "t.first"


def test_any_name_beats_a_rule_without_names() -> None:
    """A suffix match outranks a port-only rule, whatever their confidence."""
    clf = classifier(
        make_rule("t.port", {"ports": [443]}, confidence=1.0),
        make_rule("t.apex", {"host": [".acme.example"]}, confidence=0.1),
    )
    assert rule_id(clf, sni="x.acme.example", resp_p=443) == "t.apex"
    assert rule_id(clf, sni="other.example", resp_p=443) == "t.port"


def test_name_fields_are_distinct_and_host_means_any() -> None:
    """`sni` matches only the SNI; `dns_name` also a queried name; `host` any name fact."""
    clf = classifier(
        make_rule("t.sni", {"sni": ["a.acme.example"]}),
        make_rule("t.dns", {"dns_name": ["b.acme.example"]}),
        make_rule("t.host", {"host": ["c.acme.example"]}),
    )
    assert rule_id(clf, sni="a.acme.example") == "t.sni"
    assert rule_id(clf, http_host="a.acme.example") is None
    assert rule_id(clf, dns_name="b.acme.example") == "t.dns"
    assert rule_id(clf, dns_query=("b.acme.example",)) == "t.dns"
    assert rule_id(clf, sni="b.acme.example") is None
    for fact in ("sni", "quic_sni", "http_host", "dns_name"):
        assert rule_id(clf, **{fact: "c.acme.example"}) == "t.host"
    assert rule_id(clf, dns_query=("x.example", "c.acme.example")) == "t.host"


def test_names_are_normalised() -> None:
    """Case, a trailing dot and an HTTP Host port do not prevent a match."""
    clf = classifier(make_rule("t.exact", {"host": ["api.acme.example"]}))
    assert rule_id(clf, http_host="API.Acme.Example:8080") == "t.exact"
    assert rule_id(clf, dns_name="api.acme.example.") == "t.exact"
    assert normalize_name("[2001:db8::1]:443") == "2001:db8::1"
    assert normalize_name("2001:db8::1") == "2001:db8::1"
    assert normalize_name("") is None


def test_all_conditions_must_hold() -> None:
    """Conditions AND together: the right host on the wrong port does not match."""
    clf = classifier(
        make_rule("t.both", {"host": ["mqtt.acme.example"], "ports": [8883], "proto": "tcp"})
    )
    assert rule_id(clf, sni="mqtt.acme.example", resp_p=8883, proto="tcp") == "t.both"
    assert rule_id(clf, sni="mqtt.acme.example", resp_p=443, proto="tcp") is None
    assert rule_id(clf, sni="mqtt.acme.example", resp_p=8883, proto="udp") is None
    assert rule_id(clf, sni="mqtt.acme.example") is None


def test_apex_fallback_for_unlisted_dji_subdomain() -> None:
    """An unlisted DJI subdomain classifies as DJI through the apex rule; a listed one exactly."""
    clf = bundled()
    unlisted = clf.classify_facts(FlowFacts(sni="foo.djiservice.org"))
    assert unlisted is not None
    assert (unlisted.rule_id, unlisted.vendor) == ("dji.apex.djiservice_org", "DJI")
    assert unlisted.matched == {"sni": "foo.djiservice.org"}
    listed = clf.classify_facts(FlowFacts(sni="statistical-report.djiservice.org"))
    assert listed is not None and listed.rule_id == "dji.analytics.statistical_report"
    assert listed.category == "analytics" and listed.evidence == "E"
    assert listed.confidence > unlisted.confidence


def test_classify_reads_the_flow_meta() -> None:
    """classify() takes names, path, link and the 5-tuple from the flow; ASN from the caller."""
    clf = classifier(
        make_rule(
            "t.path",
            {"host": ["api.acme.example"], "http_path": ["/v2/logs"], "asn": [64500]},
            category="flight_log",
            confidence=0.9,
            evidence="E",
        ),
    )
    flow = make_test_flow(meta={"http_host": "api.acme.example", "http_path": "/v2/logs?x=1"})
    result = clf.classify(flow, asn=64500)
    assert result is not None
    assert result.rule_id == "t.path" and result.category == "flight_log"
    assert result.matched == {
        "http_host": "api.acme.example",
        "http_path": "/v2/logs?x=1",
        "asn": "64500",
    }
    assert result.behavioural is False and result.severity == "high"
    assert clf.classify(flow) is None  # no ASN known


def test_results_are_fresh_objects() -> None:
    """Changing a returned classification does not leak into later results."""
    clf = classifier(make_rule("t.exact", {"host": ["api.acme.example"]}))
    first = clf.classify_facts(FlowFacts(sni="api.acme.example"))
    assert first is not None
    first.matched["sni"] = "changed"
    second = clf.classify_facts(FlowFacts(sni="api.acme.example"))
    assert second is not None and second.matched == {"sni": "api.acme.example"}


def test_classify_name_for_dns_queries() -> None:
    """A bare name classifies through host and dns_name rules only."""
    clf = classifier(
        make_rule("t.host", {"host": [".acme.example"]}),
        make_rule("t.sni", {"sni": ["only-sni.example"]}),
    )
    result = clf.classify_name("Updates.Acme.Example")
    assert result is not None and result.rule_id == "t.host"
    assert result.matched == {"dns_query": "updates.acme.example"}
    assert clf.classify_name("only-sni.example") is None


def test_load_adds_user_packs_to_the_bundled_ones(tmp_path: Path) -> None:
    """Classifier.load reads the bundled packs plus user directories; bad packs raise."""
    (tmp_path / "mine.yaml").write_text(
        "pack: mine\nversion: 1\ndescription: d\nrules:\n"
        "  - id: mine.api\n    vendor: Mine\n    app: any\n    category: other\n"
        "    confidence: 0.5\n    evidence: I\n    source: S1\n    description: d\n"
        "    match: {host: [api.mine.example]}\n"
        "    tests: {match: [{sni: api.mine.example}], no_match: [{sni: x.example}]}\n",
        encoding="utf-8",
    )
    clf = Classifier.load([tmp_path])
    assert rule_id(clf, sni="api.mine.example") == "mine.api"
    assert rule_id(clf, sni="flysafe-api.dji.com") == "dji.flysafe.geofence_api"
    (tmp_path / "broken.yaml").write_text("pack: [\n", encoding="utf-8")
    with pytest.raises(RulePackError, match="YAML syntax error"):
        Classifier.load([tmp_path])


def test_name_hits_are_memoised() -> None:
    """Repeated names are served from the per-name cache."""
    clf = Classifier(
        RuleSet.of([make_rule("t.apex", {"host": [".acme.example"]})]),
        ClassifierOptions(name_cache_size=16),
    )
    for port in range(3):  # other facts differ: the name is looked up each time
        clf.classify_facts(FlowFacts(sni="a.acme.example", resp_p=port))
    assert "hits=2" in clf.cache_info() and "misses=1" in clf.cache_info()


def test_repeated_facts_get_the_rule_they_got_before() -> None:
    """The memo of facts gives what classifying anew gives, for every test case of the bundled
    packs seen again in another order, and a fresh, bounded result each time."""
    ruleset = load_packs()
    facts = [FlowFacts.from_case(case) for r in ruleset.rules for case in r.tests.match]
    facts += [FlowFacts.from_case(case) for r in ruleset.rules for case in r.tests.no_match]
    memo = Classifier(ruleset, ClassifierOptions(facts_cache_size=64))
    anew = Classifier(ruleset, ClassifierOptions(facts_cache_size=1))  # cleared at every miss
    order = facts + facts[::-1] + facts[::3] + facts
    results = [memo.classify_facts(f) for f in order]
    assert results == [anew.classify_facts(f) for f in order]
    assert sum(r is not None for r in results) > len(facts) // 2
    assert len(memo._best) <= 64
    again = memo.classify_facts(facts[0])
    assert again is not None and again is not memo.classify_facts(facts[0])


# --- other conditions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("thing/product/+/osd", "thing/product/1581F5BK/osd", True),
        ("thing/product/+/osd", "thing/product/1581F5BK/osd/x", False),
        ("thing/product/+/osd", "thing/product/osd", False),
        ("thing/product/#", "thing/product/1581F5BK/events", True),
        ("thing/product/#", "thing/product", True),
        ("sys/+/+/status", "sys/product/SN/status", True),
        ("#", "$SYS/broker/load", False),
        ("+/broker/load", "$SYS/broker/load", False),
        ("$SYS/#", "$SYS/broker/load", True),
        ("a/b", "a/B", False),
    ],
)
def test_topic_matches(topic_filter: str, topic: str, expected: bool) -> None:
    """MQTT filters follow the spec: `+` one level, `#` the rest, `$` topics not by wildcards."""
    assert topic_matches(topic_filter, topic) is expected


def test_mqtt_topic_rules_with_wildcards() -> None:
    """A topic rule matches when any of the flow's topics fits any of its filters."""
    clf = classifier(
        make_rule("t.osd", {"mqtt_topic": ["thing/product/+/osd"], "ports": [1883, 8883]}),
        make_rule("t.all", {"mqtt_topic": ["thing/#"]}),
    )
    facts = {"resp_p": 1883, "mqtt_topics": ("sys/x", "thing/product/SN1/osd")}
    assert rule_id(clf, **facts) == "t.osd"
    result = clf.classify_facts(FlowFacts(resp_p=1883, mqtt_topics=("thing/product/SN1/osd",)))
    assert result is not None and result.matched["mqtt_topics"] == "thing/product/SN1/osd"
    assert rule_id(clf, resp_p=1883, mqtt_topics=("thing/product/SN1/state",)) == "t.all"
    assert rule_id(clf, resp_p=1883, mqtt_topics=("sys/product/SN1/status",)) is None


def test_port_ranges_small_and_wide() -> None:
    """Ports match single values, small ranges (indexed) and wide ranges (scanned)."""
    clf = classifier(
        make_rule("t.px4", {"ports": ["14540-14549", 14560], "proto": "udp"}, confidence=0.8),
        make_rule("t.high", {"ports": ["20000-65535"]}, confidence=0.3),
    )
    assert rule_id(clf, resp_p=14540, proto="udp") == "t.px4"
    assert rule_id(clf, resp_p=14549, proto="udp") == "t.px4"
    assert rule_id(clf, resp_p=14560, proto="udp") == "t.px4"
    assert rule_id(clf, resp_p=14550, proto="udp") is None
    assert rule_id(clf, resp_p=40000, proto="tcp") == "t.high"
    assert rule_id(clf, resp_p=19999) is None
    assert rule_id(clf, proto="udp") is None


def test_ip_cidrs_v4_and_v6() -> None:
    """An ip condition matches responder addresses inside its networks only."""
    clf = classifier(make_rule("t.net", {"ip": ["198.51.100.0/24", "2001:db8:5::/48"]}))
    assert rule_id(clf, resp_ip="198.51.100.77") == "t.net"
    assert rule_id(clf, resp_ip="198.51.101.1") is None
    assert rule_id(clf, resp_ip="2001:db8:5:1::9") == "t.net"
    assert rule_id(clf, resp_ip="2001:db8:6::9") is None
    assert rule_id(clf, resp_ip="not-an-ip") is None
    result = bundled().classify(make_test_flow("192.168.2.1", proto=IP_PROTO_UDP, resp_p=9003))
    assert result is not None and result.rule_id == "dji.local.wifi_udp_9003"
    assert result.matched == {"resp_p": "9003", "proto": "udp", "resp_ip": "192.168.2.1"}
    assert result.local and result.category == "local_link"


def test_rtsp_pulled_from_a_local_aircraft_is_a_local_link_not_a_livestream() -> None:
    """An RTSP session to a local host's 554 (a Wi-Fi drone's video) is a local link; the same
    session to a public host, or to a local one on another port, stays a livestream."""

    def rtsp(resp: str, port: int = 554) -> str | None:
        flow = make_test_flow(resp, resp_p=port)
        flow.service = "rtsp"
        result = bundled().classify(flow)
        return f"{result.rule_id} {result.category}" if result is not None else None

    assert rtsp("172.16.10.1") == "wifi_drones.rtsp_554.video local_link"
    assert rtsp("203.0.113.9") == "streaming.rtsp livestream"
    assert rtsp("127.0.0.1", 8554) == "streaming.rtsp livestream"
    assert rtsp("192.168.42.1") == "parrot.local.rtsp_live local_link"


def test_local_rules_never_match_public_responders() -> None:
    """A local rule matches private or unknown responders, never a public one."""
    clf = classifier(
        make_rule("t.link", {"link": "mavlink", "local": True}, category="local_link"),
    )
    assert rule_id(clf, link="mavlink", resp_ip="192.168.1.20") == "t.link"
    assert rule_id(clf, link="mavlink", resp_ip="fe80::1") == "t.link"
    assert rule_id(clf, link="mavlink") == "t.link"
    assert rule_id(clf, link="mavlink", resp_ip="203.0.113.20") is None
    assert rule_id(clf, link="tello", resp_ip="192.168.1.20") is None
    clf = classifier(
        make_rule(
            "t.port_link",
            {"ports": [9003], "link": "dji_wifi", "local": True},
            category="local_link",
        )
    )
    assert rule_id(clf, resp_p=9003, link="dji_wifi") == "t.port_link"
    assert rule_id(clf, resp_p=9003, link="tello") is None


def test_asn_ja4_payload_and_path_conditions() -> None:
    """ASN, JA4, payload prefix and HTTP path conditions each gate their rule."""
    ja4 = "t13d1516h2_8daaf6152771_02713d6af862"
    clf = classifier(
        make_rule("t.asn", {"asn": [64500]}),
        make_rule("t.ja4", {"ja4": [ja4]}),
        make_rule("t.payload", {"payload_prefix": "fd09", "ports": [14550]}),
        make_rule("t.path", {"http_path": ["/apiv1/update", "*/flight/zip*"]}),
    )
    assert rule_id(clf, asn=64500) == "t.asn"
    assert rule_id(clf, asn=64501) is None
    assert rule_id(clf, ja4=ja4) == "t.ja4"
    assert rule_id(clf, ja4=ja4.upper()) is None
    assert rule_id(clf, resp_p=14550, payload=bytes.fromhex("fd09000102")) == "t.payload"
    assert rule_id(clf, resp_p=14550, payload=bytes.fromhex("fe09")) is None
    assert rule_id(clf, resp_p=14550) is None  # flows keep no payload
    assert rule_id(clf, http_path="/apiv1/update") == "t.path"
    assert rule_id(clf, http_path="/apiv1/update/check?x=/y") == "t.path"
    assert rule_id(clf, http_path="/apiv1/updates") is None
    assert rule_id(clf, http_path="/api/v2/flight/zipdownload") == "t.path"


def test_is_local_address() -> None:
    """Private, loopback, link-local and multicast are local; documentation ranges are not."""
    assert is_local_address("192.168.2.1") is True
    assert is_local_address("10.1.2.3") is True
    assert is_local_address("224.0.0.251") is True
    assert is_local_address("fd00::1") is True
    assert is_local_address("::ffff:192.168.1.1") is True
    assert is_local_address("203.0.113.5") is False
    assert is_local_address("2001:db8::1") is False
    assert is_local_address(None) is None
    assert is_local_address("garbage") is None


# --- behavioural labels -------------------------------------------------------------------------


def test_behavioural_sustained_upload() -> None:
    """A public TCP flow sending >1 MB and >4x what it received is a sustained upload."""
    flow = make_test_flow(orig_bytes=5_000_000, resp_bytes=200_000, orig_pkts=4000)
    label = behavioural_label(flow)
    assert label is not None
    assert label.rule_id == "behaviour.sustained_upload" and label.behavioural
    assert label.category == "other" and label.confidence == 0.3
    assert label.description == "sustained upload: possible media or flight-log sync"
    balanced = make_test_flow(orig_bytes=5_000_000, resp_bytes=2_000_000, orig_pkts=4000)
    assert behavioural_label(balanced).rule_id == "behaviour.unclassified"  # type: ignore[union-attr]


def test_behavioural_periodic_beacon() -> None:
    """A long-lived flow of small, spread-out packets is a periodic beacon."""
    flow = make_test_flow(proto=IP_PROTO_UDP, orig_bytes=120 * 100, orig_pkts=100, duration_s=600.0)
    label = behavioural_label(flow)
    assert label is not None and label.rule_id == "behaviour.periodic_beacon"
    assert label.confidence == 0.2
    burst = make_test_flow(orig_bytes=120 * 100, orig_pkts=100, duration_s=30.0)
    assert behavioural_label(burst).rule_id == "behaviour.unclassified"  # type: ignore[union-attr]


def test_behavioural_unclassified_and_local() -> None:
    """Other public flows are unclassified; flows to local responders get no label."""
    icmp = make_test_flow(proto=IP_PROTO_ICMP, resp_p=0, orig_bytes=5_000_000, resp_bytes=0)
    label = behavioural_label(icmp)
    assert label is not None and label.rule_id == "behaviour.unclassified"
    assert label.confidence == 0.1
    local = make_test_flow("192.168.1.1", orig_bytes=5_000_000, resp_bytes=0)
    assert behavioural_label(local) is None


def test_behaviour_thresholds_are_options() -> None:
    """The thresholds come from the options, through the classifier too."""
    flow = make_test_flow(orig_bytes=600_000, resp_bytes=10_000, orig_pkts=500)
    assert behavioural_label(flow).rule_id == "behaviour.unclassified"  # type: ignore[union-attr]
    opts = ClassifierOptions(behaviour=BehaviourOptions(upload_min_bytes=500_000))
    clf = Classifier(RuleSet.of([]), opts)
    assert clf.behavioural_label(flow).rule_id == "behaviour.sustained_upload"  # type: ignore[union-attr]
    assert clf.behavioural(flow) == clf.behavioural_label(flow)


# --- rule tests -----------------------------------------------------------------------------


def test_check_rule_tests_reports_failing_cases_at_their_lines(tmp_path: Path) -> None:
    """A match case that classifies elsewhere and a no_match case that hits are both reported."""
    pack = tmp_path / "p.yaml"
    pack.write_text(
        "pack: p\nversion: 1\ndescription: d\nrules:\n"
        "  - id: acme.api\n    vendor: Acme\n    app: any\n    category: other\n"
        "    confidence: 0.5\n    evidence: I\n    source: S1\n    description: d\n"
        "    match: {host: [api.acme.example]}\n"
        "    tests:\n"
        "      match:\n"
        "        - {sni: api.acme.example}\n"
        "        - {sni: www.acme.example}\n"
        "      no_match:\n"
        "        - {sni: api.acme.example}\n",
        encoding="utf-8",
    )
    ruleset = load_packs([tmp_path], bundled=False)
    issues = check_rule_tests(ruleset)
    assert [(i.path, i.line) for i in issues] == [(pack, 17), (pack, 19)]
    assert "match case 2 (sni=www.acme.example) classified as nothing" in issues[0].message
    assert "no_match case 1 (sni=api.acme.example) classified as acme.api" in issues[1].message


def test_flows_memo_key_covers_every_fact() -> None:
    """The flow memo's key reads every `flow.meta` key a fact comes from: a new fact field fails
    here until the key reads it too (the flow's own fields are in the key besides)."""
    from_flow_fields = {"resp_p", "proto", "resp_ip", "resp_local", "asn", "service", "payload"}
    meta_facts = {f.name for f in dataclasses.fields(FlowFacts)} - from_flow_fields
    # `payload` is the caller's, or else meta `first_payload` (the local-link analyzer's).
    assert meta_facts | {"first_payload"} == set(classify_module._FLOW_META)


def test_flows_memo_sees_every_fact_it_reads() -> None:
    """`classify(flow)` is memoised on what it reads off the flow: flows that differ from a flow
    classified before in one fact each get the rule that fact calls for, not the memo's answer."""
    clf = classifier(
        make_rule("t.sni", {"sni": ["a.example"]}),
        make_rule("t.quic", {"quic_sni": ["q.example"]}),
        make_rule("t.http", {"http_host": ["h.example"]}),
        make_rule("t.path", {"http_path": ["/up"]}),
        make_rule("t.dns_name", {"dns_name": ["n.example"]}),
        make_rule("t.query", {"host": ["query.example"]}),
        make_rule("t.topic", {"mqtt_topic": ["thing/+/osd"]}),
        make_rule("t.ja4", {"ja4": ["t13d1516h2_8daaf6152771_02713d6af862"]}),
        make_rule("t.link", {"link": "mavlink"}),
        make_rule("t.port", {"ports": [14550]}),
        make_rule("t.udp", {"proto": "udp"}),
        make_rule("t.ip", {"ip": ["198.51.100.0/24"]}),
        make_rule("t.service", {"service": "mqtt"}),
        make_rule("t.asn", {"asn": [64500]}),
        make_rule("t.local", {"ports": [9999], "local": True}, category="local_link"),
    )
    cases: list[tuple[str | None, dict[str, object]]] = [
        (None, {}),
        ("t.sni", {"sni": "a.example"}),
        ("t.quic", {"quic_sni": "q.example"}),
        ("t.http", {"http_host": "h.example"}),
        ("t.path", {"http_path": "/up/x"}),
        ("t.dns_name", {"dns_name": "n.example"}),
        ("t.query", {"dns_query": ["query.example"]}),
        (None, {"dns_query": ["query.example"], "queries": False}),
        ("t.topic", {"mqtt_topics": ["thing/1/osd"]}),
        ("t.ja4", {"ja4": "t13d1516h2_8daaf6152771_02713d6af862"}),
        ("t.link", {"link": "mavlink"}),
        ("t.port", {"resp_p": 14550}),
        ("t.udp", {"proto": IP_PROTO_UDP}),
        ("t.ip", {"resp_h": ip("198.51.100.7")}),
        ("t.service", {"service": "mqtt"}),
        ("t.asn", {"asn": 64500}),
        ("t.local", {"resp_p": 9999, "resp_local": True}),
        (None, {"resp_p": 9999, "resp_local": False}),
    ]
    for expected, case in cases * 2:  # the second round is served from the memo
        flow, change = make_test_flow(), dict(case)
        asn, queries = change.pop("asn", None), change.pop("queries", True)
        local = change.pop("resp_local", None)
        for key, value in change.items():
            if hasattr(flow, key):
                setattr(flow, key, value)
            else:
                flow.meta[key] = value  # type: ignore[assignment]
        result = clf.classify(
            flow,
            asn=asn,  # type: ignore[arg-type]
            queries=bool(queries),
            resp_local=local,  # type: ignore[arg-type]
        )
        assert (result.rule_id if result else None) == expected, case


def test_one_table_of_local_networks() -> None:
    """The classifier's idea of a local address is the resolver's table: every built-in range,
    carrier-grade NAT included, is local to both, and a public address to neither."""
    from dronewatch.geoip.local import GEOIP_LOCAL_V4, GEOIP_LOCAL_V6, LocalNets

    nets = LocalNets()
    for cidr, _reason in GEOIP_LOCAL_V4 + GEOIP_LOCAL_V6:
        first = cidr.split("/")[0]
        assert classify_module.is_local_address(first) is True, cidr
        assert nets.is_local(first)
    assert classify_module.is_local_address("100.64.1.2") is True
    assert classify_module.is_local_address("203.0.113.9") is False
    assert classify_module.is_local_address("not an address") is None
