"""The classifier's memos: a flow classifies as its facts do, whichever memo answers."""

from __future__ import annotations

import random
from dataclasses import replace
from functools import cache

import pytest

from dronewatch.core.flow import IP_PROTO_TCP, IP_PROTO_UDP, Flow
from dronewatch.judge.classify import Classification, Classifier, FlowFacts
from dronewatch.judge.rulepack import load_packs

NAMES = ("api.dji.com", "mqtt.dji.com", "example.org", "www.skydio.com", "tiles.mapbox.com", "")


@cache
def bundled() -> Classifier:
    """The classifier of the bundled rule packs, built once."""
    return Classifier(load_packs(()))


def rule_addresses(clf: Classifier, rng: random.Random) -> list[bytes]:
    """Addresses inside the `ip` conditions of the rules, so those rules are reached."""
    out = []
    for c in clf._rules:
        for net in c.nets or ():
            size = net.num_addresses
            out.append(net[rng.randrange(size)].packed if size > 1 else net[0].packed)
    return out


def random_flow(rng: random.Random, clf: Classifier, addresses: list[bytes]) -> Flow:
    """A flow to a rule's port or any port, a rule's address, a local or a public one, with a
    few names and facts or none."""
    ports = sorted(clf._ports)
    resp_p = rng.choice(ports) if rng.random() < 0.4 else rng.randrange(1, 65536)
    if rng.random() < 0.3 and addresses:
        resp_h = rng.choice(addresses)
    elif rng.random() < 0.5:
        resp_h = bytes([rng.choice((10, 192, 172)), 168, rng.randrange(256), rng.randrange(256)])
    else:
        resp_h = rng.randbytes(4) if rng.random() < 0.8 else rng.randbytes(16)
    flow = Flow(
        uid="CMEMO",
        proto=rng.choice((IP_PROTO_TCP, IP_PROTO_UDP)),
        orig_h=bytes([10, 0, 0, 2]),
        orig_p=rng.randrange(1024, 65536),
        resp_h=resp_h,
        resp_p=resp_p,
        first_ts=1.0,
        last_ts=2.0,
    )
    if rng.random() < 0.3:
        flow.add_meta(rng.choice(("sni", "http_host", "dns_name", "quic_sni")), rng.choice(NAMES))
    if rng.random() < 0.1:
        flow.add_meta_item("dns_query", rng.choice(NAMES))
    if rng.random() < 0.1:
        link = rng.choice(("dji_wifi", "mavlink", "tello", "parrot_arsdk"))
        flow.recognise_link(link, None)
    elif rng.random() < 0.1:
        flow.service = rng.choice(("rtmp", "rtsp", "dns", "tls"))
    return flow


@cache
def reference() -> Classifier:
    """A second classifier of the bundled packs, asked by facts only (never by flow)."""
    return Classifier(bundled().ruleset)


def expected(flow: Flow, asn: int | None, queries: bool) -> Classification | None:
    """What the rules give the flow's facts, worked out afresh (no memo of earlier answers)."""
    facts = FlowFacts.from_flow(flow, asn=asn)
    if not queries:
        facts = replace(facts, dns_query=())
    ref = reference()
    ref._best.clear()
    return ref.classify_facts(facts)


def test_memoised_classification_matches_the_facts() -> None:
    """Classifying many flows in a row (ports, addresses and names drawn so that flows share
    memo entries) gives each the rule and matched facts its own facts give."""
    rng = random.Random(18)
    clf = Classifier(bundled().ruleset)
    addresses = rule_addresses(clf, rng)
    seen_rules = set()
    for _ in range(3000):
        flow = random_flow(rng, clf, addresses)
        asn = rng.choice((None, 13335, 15169, 37963, 16509))
        queries = rng.random() < 0.8
        got = clf.classify(flow, asn=asn, queries=queries)
        want = expected(flow, asn, queries)
        assert (got and (got.rule_id, got.matched)) == (want and (want.rule_id, want.matched))
        if got is not None:
            seen_rules.add(got.rule_id)
    assert len(seen_rules) > 5  # the draws reach rules of several kinds, not only none


def test_address_rules_are_not_shared_across_addresses() -> None:
    """Flows alike but for the responder, one inside a rule's `ip` condition and one another
    local address, classify apart in any order (the memo by kind of address must not join
    them)."""
    clf = Classifier(bundled().ruleset)
    checked = 0
    for c in clf._rules:
        if not c.nets or not c.ports or c.name_fields:
            continue
        proto = {"tcp": IP_PROTO_TCP, "udp": IP_PROTO_UDP}.get(c.proto or "tcp", IP_PROTO_TCP)
        inside, elsewhere = c.nets[0][0].packed, bytes([192, 168, 77, 7])
        for resp_h in (inside, elsewhere, inside, elsewhere):
            flow = Flow("CIP", proto, bytes([192, 168, 77, 2]), 40000, resp_h, c.ports[0][0], 1, 2)
            got = clf.classify(flow)
            want = expected(flow, None, True)
            assert (got and got.rule_id) == (want and want.rule_id)
        checked += want is None or want.rule_id != c.rule.id  # the other address: not this rule
    assert checked


def test_memoised_names_match_the_facts() -> None:
    """A name asked again (DNS lookups repeat) classifies as a fresh set of facts with it does."""
    clf = Classifier(bundled().ruleset)
    fresh = Classifier(bundled().ruleset)
    names = [*NAMES[:-1], "djiservice.org", "dji.net", "www.dji.com"]
    hits = 0
    for name in names * 3:
        got = clf.classify_name(name)
        want = fresh.classify_facts(FlowFacts(dns_query=(name,)))
        assert (got and (got.rule_id, got.matched)) == (want and (want.rule_id, want.matched))
        hits += got is not None
    assert hits


def test_lookups_of_many_names_are_classified_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lookup is not traffic to the name looked up (`queries=False`): a flood of DNS flows
    asking for as many names shares one memo entry, so the rules are consulted once."""
    clf = Classifier(bundled().ruleset)
    calls: list[FlowFacts] = []
    best_for = clf._best_for

    def counted(facts: FlowFacts) -> object:
        calls.append(facts)
        return best_for(facts)

    monkeypatch.setattr(clf, "_best_for", counted)
    results = set()
    for i in range(200):
        flow = Flow(
            "CDNS", IP_PROTO_UDP, bytes([10, 0, 0, 2]), 40000 + i, bytes([10, 0, 0, 1]), 53, 1, 2
        )
        flow.service = "dns"
        flow.add_meta_item("dns_query", f"host{i}.example.org")
        got = clf.classify(flow, queries=False)
        results.add(got and got.rule_id)
    assert len(calls) == 1
    want = expected(flow, None, False)
    assert results == {want and want.rule_id}


def test_names_no_rule_names_classify_as_their_facts() -> None:
    """A name no rule names takes the shortcut of no facts; it, and names near the rules' own
    (subdomains, other case, a trailing dot, a port, globs' shapes), classify as a fresh set of
    facts with the name does."""
    clf = Classifier(bundled().ruleset)
    fresh = Classifier(bundled().ruleset)
    rng = random.Random(16)
    known = [*clf._exact, *clf._suffix, *(tail for tail in clf._globs)]
    names = ["", ".", "localhost", "printer", "a.b.c.example", "x" * 70 + ".org"]
    for _ in range(1500):
        base = rng.choice(known) if rng.random() < 0.7 else f"h{rng.randrange(999)}.example.net"
        name = rng.choice(("", "api.", "x1.", "cdn-7.")) + base
        name = rng.choice((name, name.upper(), name + ".", name + ":443", " " + name))
        names.append(name)
    named = 0
    for name in names:
        got = clf.classify_name(name)
        want = fresh.classify_facts(FlowFacts(dns_query=(name,)))
        assert (got and (got.rule_id, got.matched)) == (want and (want.rule_id, want.matched)), name
        named += got is not None
    assert named > 100  # the draws reach rules, not only the shortcut
