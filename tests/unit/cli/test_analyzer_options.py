"""`--analyzer-option ANALYZER.FIELD=VALUE` on the analysis commands; `dronewatch analyzers`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path

import pytest

from dronewatch.analyzers import AnalyzerOptions
from dronewatch.cli.analyzer_options import analyzer_options, convert, field_docs, show
from dronewatch.cli.app import EXIT_OK, EXIT_USAGE, build_parser, main
from dronewatch.exceptions import ConfigError
from tests.pcaps import PCAPS

DNS = PCAPS / "lab" / "dns.pcap"


def answers(out: Path) -> dict[str, list[str]]:
    lines = (out / "dns.jsonl").read_text().splitlines()
    return {r["query"]: r["answers"] for r in map(json.loads, lines)}


def test_option_changes_what_analyze_writes(tmp_path: Path) -> None:
    """dns.max_answers=1 keeps one of the two answers the capture has for mydjiflight."""
    assert main(["analyze", "--quiet", "--out", str(tmp_path / "a"), str(DNS)]) == EXIT_OK
    args = ["--analyzer-option", "dns.max_answers=1", "--out", str(tmp_path / "b")]
    assert main(["analyze", "--quiet", *args, str(DNS)]) == EXIT_OK
    assert len(answers(tmp_path / "a")["mydjiflight.dji.com"]) == 2
    assert answers(tmp_path / "b")["mydjiflight.dji.com"] == ["mydjiflight.dji.com.cdn.example"]


def test_later_option_wins_and_others_keep_their_defaults() -> None:
    """Options apply in order; fields and analyzers not named keep their defaults."""
    got = analyzer_options(
        ["dns.max_answers=3", "dns.max_answers=5", "tls.max_records=9", "dns.follow_flow=no"]
    )
    defaults = AnalyzerOptions()
    assert (got.dns.max_answers, got.dns.follow_flow, got.tls.max_records) == (5, False, 9)
    assert got.dns.max_pending == defaults.dns.max_pending and got.quic == defaults.quic


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("dns", "expected ANALYZER.FIELD=VALUE, e.g. dns.max_answers=8"),
        ("dns.max_answers", "expected ANALYZER.FIELD=VALUE"),
        ("tsl.max_segments=3", "no analyzer 'tsl'; analyzers with options: dji_droneid, "),
        ("dhcp.max=3", "analyzer 'dhcp' has no options; analyzers with options: "),
        (
            "tls.max_record=3",
            "tls has no option 'max_record'; its options: max_buffer_bytes, max_records",
        ),
        ("dns.max_answers=many", "dns.max_answers takes a whole number, 0 or more, not 'many'"),
        ("dns.max_answers=-1", "takes a whole number, 0 or more, not '-1'"),
        ("dns.max_answers=1.5", "not '1.5'"),
        ("dns.follow_flow=maybe", "dns.follow_flow takes true or false, not 'maybe'"),
        ("dns.max_pending=0", "dns options: max_pending must be at least 1"),
        ("http.max_pending=0", "http options: max_pending must be at least 1"),
    ],
)
@pytest.mark.parametrize("command", ["analyze", "diff"])
def test_bad_option_is_one_line_and_exit_2(
    command: str, option: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed option, unknown analyzer or field, or bad value: exit 2 and one line naming
    it (with the valid names on a typo), never a traceback."""
    files = [str(DNS)] * (2 if command == "diff" else 1)
    assert main([command, "--analyzer-option", option, *files]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"dronewatch: --analyzer-option {option!r}: ")
    assert message in err


@pytest.mark.parametrize(
    "argv",
    [
        ["agent", "-i", "lo", "--api", "http://127.0.0.1:1", "--key", "k"],
        ["replay", "--api", "http://127.0.0.1:1", "--key", "k", str(DNS)],
        ["serve", "--port", "1", "--data-dir", "DATA"],
    ],
    ids=["agent", "replay", "serve"],
)
def test_every_command_building_a_config_checks_the_option(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """agent, replay and serve take the option too, and refuse a bad one before doing anything."""
    argv = [str(tmp_path) if a == "DATA" else a for a in argv]
    assert main([*argv, "--analyzer-option", "tls.nope=1"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tls has no option 'nope'" in err
    assert not any(tmp_path.iterdir())  # serve stopped before making its database


def test_option_reaches_every_command_parser() -> None:
    """The five commands that build an AnalysisConfig all parse --analyzer-option."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("analyze", "diff", "agent", "replay", "serve"):
        dests = {a.dest for a in sub.choices[command]._actions}
        assert "analyzer_option" in dests, command


def test_every_option_field_converts_from_its_shown_default() -> None:
    """Every field of every analyzer's options can be set on the command line: its default,
    written as the listing shows it, converts back to the default."""
    for analyzer in dataclasses.fields(AnalyzerOptions):
        options = getattr(AnalyzerOptions(), analyzer.name)
        hints = typing.get_type_hints(type(options))
        for f in dataclasses.fields(options):
            default = getattr(options, f.name)
            assert convert(show(default), hints[f.name]) == default, f"{analyzer.name}.{f.name}"


@pytest.mark.parametrize(
    ("text", "tp", "value"),
    [
        ("3", int, 3),
        ("2.5", float, 2.5),
        ("ON", bool, True),
        ("0", bool, False),
        (" a b ", str, " a b "),
        ("a, b,c", tuple[str, ...], ("a", "b", "c")),
        ("", tuple[int, ...], ()),
        ("1,2", tuple[int, int], (1, 2)),
    ],
)
def test_values_convert_to_the_field_type(text: str, tp: object, value: object) -> None:
    """int, float, bool, str and tuples of them are read from their command-line text."""
    assert convert(text, tp) == value


@pytest.mark.parametrize(
    ("text", "tp", "expected"),
    [
        ("x", float, "a number, 0 or more"),
        ("nan", float, "a number, 0 or more"),
        ("1,x", tuple[int, ...], "a comma-separated list of a whole number, 0 or more"),
        ("1", tuple[int, int], "2 comma-separated values (int, int)"),
    ],
)
def test_bad_values_say_what_the_type_takes(text: str, tp: object, expected: str) -> None:
    """A value that does not convert raises ValueError describing what the type takes."""
    with pytest.raises(ValueError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        convert(text, tp)


def test_unsupported_field_type_is_a_type_error() -> None:
    """A field type the command line cannot express is a programming error, not a user one."""
    with pytest.raises(TypeError, match="cannot be set from the command line"):
        convert("1", dict[str, int])


def test_config_error_is_a_dronewatch_error() -> None:
    """analyzer_options raises ConfigError, which every command turns into exit 2."""
    with pytest.raises(ConfigError):
        analyzer_options(["nope.x=1"])


def test_analyzers_command_lists_options_defaults_and_docs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`dronewatch analyzers` lists every analyzer, each option with its default and type, and
    the option's docstring; an analyzer without options says so."""
    assert main(["analyzers"]) == EXIT_OK
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "  dns.max_answers=32  (int)" in lines
    i = lines.index("  dns.max_answers=32  (int)")
    assert lines[i + 1] == "      Answers (and TTLs) kept in one record."
    assert "  dns.follow_flow=true  (bool)" in lines
    dhcp = next(n for n, ln in enumerate(lines) if ln.startswith("dhcp: "))
    assert lines[dhcp + 1] == "  (no options)"
    for analyzer in dataclasses.fields(AnalyzerOptions):
        options = getattr(AnalyzerOptions(), analyzer.name)
        docs = field_docs(type(options))
        for f in dataclasses.fields(options):
            assert docs.get(f.name), f"{analyzer.name}.{f.name} has no docstring"
            assert f"  {analyzer.name}.{f.name}=" in out


def test_serve_passes_its_options_to_its_capture_child(tmp_path: Path) -> None:
    """`serve -i` hands its --analyzer-option and engine options (--max-flows, --stall-packets,
    --stall-bytes) to the `dronewatch agent` it starts."""
    from dronewatch.api.settings import Settings
    from dronewatch.cli.serve import capture_argv

    parser = build_parser()
    options = ["dns.max_answers=4", "tls.max_records=8"]
    args = parser.parse_args(["serve", "-i", "eth9", *(f"--analyzer-option={o}" for o in options)])
    argv = capture_argv(args, Settings(data_dir=tmp_path), "afpacket")
    assert parser.parse_args(argv[3:]).analyzer_option == options
    assert parser.parse_args(argv[3:]).max_flows is None
    engine = ["--max-flows", "5000", "--stall-packets", "0", "--stall-bytes", "9000"]
    capped = parser.parse_args(["serve", "-i", "eth9", *engine])
    child = parser.parse_args(capture_argv(capped, Settings(data_dir=tmp_path), "afpacket")[3:])
    assert (child.max_flows, child.stall_packets, child.stall_bytes) == (5000, 0, 9000)
