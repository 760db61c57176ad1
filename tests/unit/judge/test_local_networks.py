"""One table of local networks per run: the user's local subnets reach every stage that asks
whether an address is local (the monitor, the classifier, the local-link analyzer, the lookup
of a reverse name), not only the GeoIP resolver."""

from __future__ import annotations

from pathlib import Path

from dronewatch.capture.files import FileSource
from dronewatch.core.flow import IP_PROTO_UDP, Flow
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, Pipeline, run_source
from dronewatch.geoip.local import LocalNets, is_local_name
from dronewatch.geoip.null import NullResolver
from dronewatch.judge.classify import Classifier
from dronewatch.judge.egress import KIND_LOOKUP, EgressRecord
from dronewatch.judge.rulepack import load_packs
from tests.unit.judge.test_monitor import PHONE, dns_query, ldm_on, udp, write_raw

LAB = "198.51.100.0/24"
"""A range the built-in table takes for public (documentation space), declared local here."""


def lab_flow() -> Flow:
    flow = Flow(
        "CLAB",
        IP_PROTO_UDP,
        bytes([198, 51, 100, 2]),
        14550,
        bytes([198, 51, 100, 9]),
        14600,
        1.0,
        2.0,
    )
    flow.recognise_link("mavlink", None)
    return flow


def test_the_pipeline_lends_its_resolvers_local_networks_to_the_analyzers() -> None:
    resolver = NullResolver(local=LocalNets([LAB]))
    pipe = Pipeline(lambda record: None, AnalysisConfig(resolver=resolver))
    assert pipe.ctx.local is resolver.local
    link = next(a for a in pipe.engine.analyzers if a.name == "local_link")
    assert link.wants(lab_flow())  # type: ignore[attr-defined]
    plain = Pipeline(lambda record: None, AnalysisConfig())
    link = next(a for a in plain.engine.analyzers if a.name == "local_link")
    assert not link.wants(lab_flow())  # type: ignore[attr-defined]


def test_a_rule_for_local_flows_follows_the_runs_answer() -> None:
    """MAVLink between two hosts of a declared local subnet is a local link, as the monitor
    takes it; to the same address taken for public it is telemetry leaving the device."""
    clf = Classifier(load_packs(()))
    local = clf.classify(lab_flow(), resp_local=True)
    public = clf.classify(lab_flow(), resp_local=False)
    builtin = clf.classify(lab_flow())  # no answer given: the built-in ranges decide
    assert local is not None and local.rule_id == "mavlink.link.local"
    assert public is not None and public.rule_id == "mavlink.link.remote"
    assert builtin is not None and builtin.rule_id == "mavlink.link.remote"
    # Memoised answers do not leak from one answer to the other.
    assert clf.classify(lab_flow(), resp_local=True).rule_id == "mavlink.link.local"  # type: ignore[union-attr]


def test_a_reverse_lookup_of_a_declared_local_address_stays_local(tmp_path: Path) -> None:
    """A phone asking a public resolver for the reverse name of an address in a declared local
    subnet looks up a local name: no egress observation, as for a private address; without
    the declaration the lookup is an attempt to reach off the device."""
    name = "9.100.51.198.in-addr.arpa"
    assert is_local_name(name, LocalNets([LAB])) and not is_local_name(name)
    path = write_raw(
        tmp_path / "phone.pcap", [udp(PHONE, 40003, "8.8.8.8", 53, dns_query(name, 3))]
    )
    seen = {}
    for nets in (LocalNets([LAB]), LocalNets()):
        records: list[Record] = []
        config = AnalysisConfig(
            policy=ldm_on(), classifier=Classifier.load(), resolver=NullResolver(local=nets)
        )
        run_source(FileSource(str(path)), records.append, config)
        lookups = [r for r in records if isinstance(r, EgressRecord) and r.kind == KIND_LOOKUP]
        seen[bool(nets.subnets)] = [r.dest_name for r in lookups]
    assert seen == {True: [], False: [name]}
