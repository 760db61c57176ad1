"""Rule-pack schema and loading: valid packs load, invalid ones are reported at FILE:LINE."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dronewatch.exceptions import RulePackError
from dronewatch.judge.rulepack import (
    CATEGORIES,
    LintIssue,
    RulePackLintError,
    bundled_rules_dir,
    check_packs,
    load_packs,
    parse_port_spec,
    validate_rule,
)

HEADER = """\
pack: sample
version: 1
description: A sample pack.
rules:
"""

GOOD_RULE = """\
  - id: acme.cloud.api
    vendor: Acme
    app: Acme Fly
    category: telemetry
    confidence: 0.9
    evidence: E
    source: "S1: example"
    description: Acme telemetry API.
    match:
      host: [api.acme.example]
    tests:
      match:
        - {sni: api.acme.example}
      no_match:
        - {sni: www.acme.example}
"""


def write(directory: Path, name: str, text: str) -> Path:
    """Write a pack file and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(path: Path, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the n-th line of `path` containing `needle`."""
    seen = 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in {path}")


def issues_for(directory: Path) -> list[LintIssue]:
    """The issues of the packs in `directory` alone (bundled packs left out)."""
    return check_packs([directory], bundled=False)[1]


def test_valid_pack_loads_with_origins_and_default_severity(tmp_path: Path) -> None:
    """A valid pack loads; the rule keeps its file, line, case lines and a category severity."""
    path = write(tmp_path, "sample.yaml", HEADER + GOOD_RULE)
    ruleset = load_packs([tmp_path], bundled=False)
    rule = ruleset.get("acme.cloud.api")
    assert rule is not None
    assert rule.severity == "high"  # telemetry leaving the device
    origin = ruleset.origins["acme.cloud.api"]
    assert origin.path == path and origin.line == line_of(path, "- id: acme.cloud.api")
    assert origin.match_lines == (line_of(path, "{sni: api.acme.example}"),)
    assert origin.no_match_lines == (line_of(path, "{sni: www.acme.example}"),)
    assert [p.name for p in ruleset.packs] == ["sample"]


def test_unknown_key_reported_at_its_line(tmp_path: Path) -> None:
    """An unknown key in a rule is an error on the line of that key."""
    text = HEADER + GOOD_RULE.replace("    app: Acme Fly\n", "    app: Acme Fly\n    colour: red\n")
    path = write(tmp_path, "sample.yaml", text)
    issues = issues_for(tmp_path)
    assert len(issues) == 1
    assert issues[0].path == path
    assert issues[0].line == line_of(path, "colour: red")
    assert "unknown key 'colour'" in issues[0].message
    assert "rules.0.colour" in issues[0].message


def test_unknown_match_key_reported_at_its_line(tmp_path: Path) -> None:
    """An unknown condition inside match is reported on its own line, not the rule's."""
    text = HEADER + GOOD_RULE.replace(
        "      host: [api.acme.example]\n",
        "      host: [api.acme.example]\n      snii: [x.acme.example]\n",
    )
    path = write(tmp_path, "sample.yaml", text)
    (issue,) = issues_for(tmp_path)
    assert issue.line == line_of(path, "snii:")
    assert "rules.0.match.snii" in issue.message


def test_bad_category_reported_at_its_line(tmp_path: Path) -> None:
    """A category outside the fixed set is an error on the category line."""
    text = (
        HEADER
        + GOOD_RULE
        + GOOD_RULE.replace("acme.cloud.api", "acme.cloud.other").replace(
            "category: telemetry", "category: spying"
        )
    )
    path = write(tmp_path, "sample.yaml", text)
    (issue,) = issues_for(tmp_path)
    assert issue.line == line_of(path, "category: spying")
    assert "rules.1.category" in issue.message and "flight_log" in issue.message


def test_bad_list_item_reported_at_the_item(tmp_path: Path) -> None:
    """A bad value in a block list points at that item's line."""
    text = HEADER + GOOD_RULE.replace(
        "      host: [api.acme.example]\n",
        "      host: [api.acme.example]\n      ports:\n        - 443\n        - 9-1\n",
    )
    path = write(tmp_path, "sample.yaml", text)
    (issue,) = issues_for(tmp_path)
    assert issue.line == line_of(path, "- 9-1")
    assert "rules.0.match.ports.1" in issue.message


def test_duplicate_id_across_packs(tmp_path: Path) -> None:
    """The same rule id in two packs is an error at the second definition."""
    write(tmp_path, "a.yaml", HEADER + GOOD_RULE)
    second = write(tmp_path, "b.yaml", HEADER.replace("sample", "second") + GOOD_RULE)
    ruleset, issues = check_packs([tmp_path], bundled=False)
    (issue,) = issues
    assert issue.path == second and issue.line == line_of(second, "- id: acme.cloud.api")
    assert "duplicate rule id 'acme.cloud.api'" in issue.message and "a.yaml:5" in issue.message
    assert len(ruleset.rules) == 1


def test_user_rule_reusing_a_bundled_id_is_an_error(tmp_path: Path) -> None:
    """A user pack (--rules DIR) may not redefine a bundled rule id."""
    user = write(
        tmp_path, "mine.yaml", HEADER + GOOD_RULE.replace("acme.cloud.api", "dji.apex.dji_com")
    )
    with pytest.raises(RulePackError) as info:
        load_packs([tmp_path])
    assert isinstance(info.value, RulePackLintError)
    (issue,) = info.value.issues
    assert issue.path == user and "duplicate rule id 'dji.apex.dji_com'" in issue.message


def test_missing_tests_reported_at_the_rule(tmp_path: Path) -> None:
    """A rule without tests is an error at the rule's first line."""
    text = HEADER + GOOD_RULE.split("    tests:\n")[0]
    path = write(tmp_path, "sample.yaml", text)
    (issue,) = issues_for(tmp_path)
    assert issue.line == line_of(path, "- id: acme.cloud.api")
    assert "missing required key 'tests'" in issue.message


def test_empty_no_match_list_is_an_error(tmp_path: Path) -> None:
    """Every rule needs at least one no_match case; an empty list is reported at its key."""
    text = HEADER + GOOD_RULE.replace(
        "      no_match:\n        - {sni: www.acme.example}\n", "      no_match: []\n"
    )
    path = write(tmp_path, "sample.yaml", text)
    (issue,) = issues_for(tmp_path)
    assert issue.line == line_of(path, "no_match: []")
    assert "rules.0.tests.no_match" in issue.message


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    """A YAML syntax error is reported with the line where the parser stopped."""
    text = HEADER + GOOD_RULE.replace(
        "      host: [api.acme.example]", "      host: [api.acme.example"
    )
    path = write(tmp_path, "sample.yaml", text)
    (issue,) = issues_for(tmp_path)
    assert issue.path == path
    assert issue.message.startswith("YAML syntax error")
    assert line_of(path, "host: [api.acme.example") <= issue.line <= line_of(path, "tests:") + 1


def test_duplicate_yaml_key_is_an_error(tmp_path: Path) -> None:
    """A key given twice in one mapping (which YAML would silently collapse) is reported."""
    text = HEADER + GOOD_RULE.replace("    vendor: Acme\n", "    vendor: Acme\n    vendor: Other\n")
    path = write(tmp_path, "sample.yaml", text)
    (issue,) = issues_for(tmp_path)
    assert issue.line == line_of(path, "vendor: Other")
    assert "duplicate key 'vendor'" in issue.message


def test_issues_from_several_files_are_all_collected(tmp_path: Path) -> None:
    """Linting does not stop at the first bad file or the first bad rule."""
    bad = GOOD_RULE.replace("evidence: E", "evidence: strong")
    write(tmp_path, "a.yaml", HEADER + bad + bad.replace("acme.cloud.api", "acme.cloud.two"))
    write(tmp_path, "b.yaml", "pack: [unterminated\n")
    issues = issues_for(tmp_path)
    assert [i.path.name for i in issues] == ["a.yaml", "a.yaml", "b.yaml"]


def test_missing_directory_and_empty_file(tmp_path: Path) -> None:
    """A missing pack directory and an empty pack file are both issues."""
    write(tmp_path / "packs", "empty.yaml", "")
    issues = check_packs([tmp_path / "packs", tmp_path / "nowhere"], bundled=False)[1]
    assert [i.message for i in issues] == [
        "empty pack file",
        "rule pack directory does not exist",
    ]
    assert str(issues[1]) == f"{tmp_path / 'nowhere'}: rule pack directory does not exist"
    assert str(issues[0]) == f"{tmp_path / 'packs' / 'empty.yaml'}:1: empty pack file"


def _rule(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "acme.cloud.api",
        "vendor": "Acme",
        "app": "any",
        "category": "other",
        "confidence": 0.5,
        "evidence": "I",
        "source": "S1",
        "description": "d",
        "match": {"host": ["api.acme.example"]},
        "tests": {"match": [{"sni": "api.acme.example"}], "no_match": [{"sni": "x.example"}]},
    }
    base.update(changes)
    return base


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"id": "Acme.Cloud"}, "dotted lower_snake"),
        ({"id": "acme"}, "dotted lower_snake"),
        ({"id": "behaviour.mine"}, "reserved"),
        ({"confidence": 1.5}, "less than or equal to 1"),
        ({"evidence": "E-weak"}, "'E-w'"),
        ({"severity": "urgent"}, "critical"),
        ({"match": {}}, "at least one condition"),
        ({"match": {"local": True}}, "at least one condition"),
        ({"match": {"host": ["*.com"]}}, "two literal labels"),
        ({"match": {"host": [".com"]}}, "at least two labels"),
        ({"match": {"host": [".*.acme.example"]}}, "cannot hold wildcards"),
        ({"match": {"host": ["bad_host!.example"]}}, "invalid host name label"),
        ({"match": {"ports": [70000]}}, "0-65535"),
        ({"match": {"ports": ["http"]}}, "range 'low-high'"),
        ({"match": {"ports": [True]}}, "not a port"),
        ({"match": {"mqtt_topic": ["a/#/b"]}}, "last one"),
        ({"match": {"mqtt_topic": ["a/b+/c"]}}, "whole level"),
        ({"match": {"ip": ["192.168.2.1/24"]}}, "CIDR"),
        ({"match": {"ja4": ["t13d"]}}, "JA4"),
        ({"match": {"payload_prefix": "zz"}}, "hex"),
        ({"match": {"http_path": ["api/v1"]}}, "starts with '/'"),
        ({"match": {"ports": [9003], "local": True}}, "local_link and local: true"),
        ({"category": "local_link", "match": {"host": ["x.acme.example"], "local": True}}, "names"),
        ({"tests": {"match": [{}], "no_match": [{"sni": "x"}]}}, "at least one flow fact"),
        ({"tests": {"match": [{"sni": "a"}], "no_match": [{"colour": "x"}]}}, "no_match.0.colour"),
        ({"tests": {"match": [{"resp_ip": "10.0.0"}], "no_match": [{"sni": "x"}]}}, "IP address"),
        ({"match": {"host": ["  "]}}, "empty host pattern"),
        ({"match": {"host": [".bad!.example"]}}, "invalid label"),
        ({"match": {"host": ["li!ght-*.acme.example"]}}, "invalid glob"),
        ({"match": {"mqtt_topic": [""]}}, "empty MQTT topic filter"),
        ({"match": {"ports": [1.5]}}, "integer or a range"),
        ({"match": {"payload_prefix": ""}}, "empty hex string"),
        ({"match": {"link": "DJI-WiFi"}}, "lower_snake"),
    ],
)
def test_schema_rejects(changes: dict[str, object], needle: str) -> None:
    """Each malformed rule field is rejected with a message naming the problem."""
    with pytest.raises(ValueError) as info:
        validate_rule(_rule(**changes))
    assert needle in str(info.value)


def test_patterns_are_normalised() -> None:
    """Host patterns are lower-cased, ports and CIDRs put in canonical form."""
    rule = validate_rule(
        _rule(
            match={
                "host": ["API.Acme.Example.", ".Acme.Example", "Light-*.Acme.Example"],
                "ports": [443, "8000 - 8010"],
                "ip": ["2001:DB8::/32"],
            }
        )
    )
    assert rule.match.host == ["api.acme.example", ".acme.example", "light-*.acme.example"]
    assert rule.match.ports == ["443", "8000-8010"]
    assert rule.match.ip == ["2001:db8::/32"]
    assert rule.severity == "low"


def test_parse_port_spec() -> None:
    """Port specs are single ports or inclusive ranges."""
    assert parse_port_spec(8883) == (8883, 8883)
    assert parse_port_spec("14540-14549") == (14540, 14549)
    with pytest.raises(ValueError):
        parse_port_spec("10-5")


def test_bundled_rules_dir_holds_the_packs() -> None:
    """The bundled pack directory is found in a development checkout and holds dji.yaml."""
    directory = bundled_rules_dir()
    assert (directory / "dji.yaml").is_file()


def test_policy_accepts_exactly_the_rule_categories(tmp_path: Path) -> None:
    """A policy may allow every rule category, and nothing else."""
    from dronewatch.exceptions import PolicyError
    from dronewatch.judge.policy_file import load_policy

    good = tmp_path / "good.yaml"
    good.write_text(f"defaults:\n  allowed_categories: [{', '.join(CATEGORIES)}]\n")
    assert load_policy(good).defaults.allowed_categories == frozenset(CATEGORIES)
    bad = tmp_path / "bad.yaml"
    bad.write_text("defaults:\n  allowed_categories: [weather]\n")
    with pytest.raises(PolicyError, match="weather"):
        load_policy(bad)


def test_anchors_and_merge_keys_are_allowed(tmp_path: Path) -> None:
    """Packs may share fields through YAML anchors and merge keys."""
    text = HEADER + GOOD_RULE.replace(
        "  - id: acme.cloud.api\n", "  - &base\n    id: acme.cloud.api\n"
    )
    text += (
        "  - <<: *base\n"
        "    id: acme.cloud.other\n"
        "    match: {host: [other.acme.example]}\n"
        "    tests: {match: [{sni: other.acme.example}], no_match: [{sni: x.example}]}\n"
    )
    write(tmp_path, "sample.yaml", text)
    ruleset = load_packs([tmp_path], bundled=False)
    assert [r.id for r in ruleset] == ["acme.cloud.api", "acme.cloud.other"]
    assert len(ruleset) == 2
    assert ruleset.rules[1].vendor == "Acme"


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    """Undecodable bytes, control characters and a non-mapping document are each one issue."""
    (tmp_path / "a_binary.yaml").write_bytes(b"pack: \xff\xfe\n")
    write(tmp_path, "b_control.yaml", "pack: a\x07\n")
    write(tmp_path, "c_list.yaml", "- pack: a\n")
    write(tmp_path, "d_header.yaml", "pack: Bad Name\nversion: 1\ndescription: d\nrules: []\n")
    issues = issues_for(tmp_path)
    messages = [(i.path.name, i.line, i.message.split(":")[0]) for i in issues]
    assert messages[0] == ("a_binary.yaml", 0, "cannot read pack")
    assert messages[1] == ("b_control.yaml", 1, "YAML error")
    assert messages[2] == ("c_list.yaml", 1, "a pack is a mapping with pack, version, rules")
    assert [m[2] for m in messages[3:]] == ["pack", "rules"]
    assert [m[1] for m in messages[3:]] == [1, 4]


def test_duplicate_pack_name_and_empty_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two packs with one name are an error; a directory without packs only warns."""
    write(tmp_path / "packs", "a.yaml", HEADER + GOOD_RULE)
    second = write(
        tmp_path / "packs", "b.yaml", HEADER + GOOD_RULE.replace("acme.cloud.api", "acme.cloud.b")
    )
    (tmp_path / "empty").mkdir()
    with caplog.at_level("WARNING", logger="dronewatch.judge.rulepack"):
        issues = check_packs([tmp_path / "packs", tmp_path / "empty"], bundled=False)[1]
    (issue,) = issues
    assert issue.path == second and "duplicate pack name 'sample'" in issue.message
    assert "no rule packs" in caplog.text


def test_installed_package_rules_dir_is_preferred(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the installed package carries dronewatch/rules/, that directory is used."""
    import importlib.resources

    (tmp_path / "rules").mkdir()
    monkeypatch.setattr(importlib.resources, "files", lambda package: tmp_path)
    assert bundled_rules_dir() == tmp_path / "rules"
