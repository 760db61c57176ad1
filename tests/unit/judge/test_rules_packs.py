"""The bundled rule packs: every rule's own cases hold, and `rules lint` / `rules list` work."""

from __future__ import annotations

import argparse
import io
import re
from functools import cache
from pathlib import Path

import pytest

from dronewatch.cli.rules import lint, register
from dronewatch.judge.classify import Classifier, FlowFacts
from dronewatch.judge.rulepack import RuleCase, RuleSet, bundled_rules_dir, load_packs, pack_files


@cache
def bundled() -> tuple[RuleSet, Classifier]:
    """The bundled packs and a classifier over them, loaded once."""
    ruleset = load_packs()
    return ruleset, Classifier(ruleset)


def _cases(kind: str) -> list[object]:
    ruleset, _ = bundled()
    params: list[object] = []
    for rule in ruleset.rules:
        cases = rule.tests.match if kind == "match" else rule.tests.no_match
        for i, case in enumerate(cases):
            params.append(pytest.param(rule.id, case, id=f"{rule.id}-{kind}-{i + 1}"))
    return params


@pytest.mark.parametrize(("rule_id", "case"), _cases("match"))
def test_match_case_classifies_to_its_rule(rule_id: str, case: RuleCase) -> None:
    """Each `match` case classifies to exactly its rule (not a more specific one)."""
    _, clf = bundled()
    result = clf.classify_facts(FlowFacts.from_case(case))
    assert result is not None, f"{rule_id}: case matched no rule"
    assert result.rule_id == rule_id


@pytest.mark.parametrize(("rule_id", "case"), _cases("no_match"))
def test_no_match_case_does_not_classify_to_its_rule(rule_id: str, case: RuleCase) -> None:
    """Each `no_match` case classifies to something else, or to nothing."""
    _, clf = bundled()
    result = clf.classify_facts(FlowFacts.from_case(case))
    assert result is None or result.rule_id != rule_id


def test_every_pack_file_loads() -> None:
    """Every YAML file in the bundled directory is a loaded pack, and every rule has cases."""
    ruleset, _ = bundled()
    files = pack_files(bundled_rules_dir())
    assert {p.path for p in ruleset.packs} == set(files)
    assert len(files) >= 12
    assert all(r.tests.match and r.tests.no_match for r in ruleset.rules)


def test_rules_cite_their_sources() -> None:
    """Each rule's source starts with endpoints.md keys, or says plainly that it is not there."""
    ruleset, _ = bundled()
    cited = re.compile(
        r"^(S\d+|code-index \d+)(, (S\d+|code-index \d+))*[:]|^not in endpoints\.md:"
    )
    uncited = [r.id for r in ruleset.rules if not cited.match(r.source)]
    assert uncited == []


def test_inferred_rules_are_not_confident() -> None:
    """Rules tagged I (inferred) never claim high confidence."""
    ruleset, _ = bundled()
    assert [r.id for r in ruleset.rules if r.evidence == "I" and r.confidence > 0.8] == []


def test_dji_apex_domains_are_covered() -> None:
    """Every DJI-owned apex domain has a vendor-wide suffix rule."""
    _, clf = bundled()
    apexes = [
        "dji.com", "djiservice.org", "djicdn.com", "djigate.com", "djiits.com", "djivideos.com",
        "djiops.com", "djicorp.com", "skypixel.com", "dbeta.me", "aasky.net", "fffsky.net",
        "djiexplore.com", "dji-innovations.com", "djiag.com", "ryzerobotics.com", "uav.com",
        "uavservice.org",
    ]  # fmt: skip
    for apex in apexes:
        result = clf.classify_name(f"zz-unlisted.{apex}")
        assert result is not None and result.rule_id.startswith("dji.apex."), apex
        assert result.vendor == "DJI" and result.confidence <= 0.6


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dronewatch")
    register(parser.add_subparsers(dest="command"))
    return parser


def test_rules_lint_is_clean_on_the_bundled_packs(capsys: pytest.CaptureFixture[str]) -> None:
    """`dronewatch rules lint` exits 0 on the bundled packs and says how much it checked."""
    args = _parser().parse_args(["rules", "lint"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\d+ rules in \d+ packs, \d+ test cases: OK$", out, re.M)


def test_rules_lint_reports_user_pack_issues(tmp_path: Path) -> None:
    """A bad user pack makes lint exit 1 with FILE:LINE lines."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("pack: bad\nversion: 1\ndescription: d\nrules:\n  - id: bad.rule\n")
    out = io.StringIO()
    assert lint([tmp_path], out=out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0].startswith(f"{bad}:5: rules.0.")
    assert lines[-1].endswith("issues")


def test_rules_list_filters_by_vendor_and_category(capsys: pytest.CaptureFixture[str]) -> None:
    """`rules list` prints a table, filtered by vendor (case-insensitive) and category."""
    args = _parser().parse_args(["rules", "list", "--vendor", "parrot", "--category", "firmware"])
    assert args.func(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["ID", "VENDOR", "CATEGORY"]
    assert any(line.startswith("parrot.appcentral.firmware_update ") for line in out)
    assert all("Parrot" in line and "firmware" in line for line in out[1:-1])
    assert out[-1] == f"{len(out) - 2} rules" or out[-1] == "1 rule"


def test_rules_list_refuses_broken_packs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`rules list` exits 1 and reports issues when a pack does not load."""
    (tmp_path / "bad.yaml").write_text("pack: [\n")
    args = _parser().parse_args(["rules", "list", "--rules", str(tmp_path)])
    assert args.func(args) == 1
    assert "YAML syntax error" in capsys.readouterr().err


def test_rules_needs_an_action() -> None:
    """`dronewatch rules` without lint or list is a usage error."""
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["rules"])
    assert info.value.code == 2
