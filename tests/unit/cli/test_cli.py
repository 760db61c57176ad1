"""The `dronewatch` command as a user runs it: help, outputs, error messages and exit codes."""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from dronewatch.cli.app import EXIT_DAMAGED, EXIT_OK, EXIT_USAGE, EXIT_VIOLATION, main, worst
from tests.pcaps import PCAPS

HTTP = PCAPS / "lab" / "http.pcap"
TLS = PCAPS / "lab" / "tls_sni.pcap"
VIOLATION = PCAPS / "scenarios" / "dji_fly_ldm_on_violation.pcap"
LDM_OFF = PCAPS / "scenarios" / "dji_fly_ldm_off.pcap"
MAPS_ONLY = PCAPS / "scenarios" / "dji_fly_ldm_on_maps_only.pcap"
DRONEWATCH = Path(sys.executable).parent / "dronewatch"


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user would call it."""
    return subprocess.run(
        [str(DRONEWATCH), *args],
        input=stdin.decode("latin-1") if stdin is not None else None,
        capture_output=True,
        text=True,
        encoding="latin-1",
        check=False,
    )


def run_here(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[str]:
    """The same `main` the console script calls, in this process, for the checks of help, of
    argument and file errors and of what analyze prints and writes (each command also runs
    through `run` at least once). Diagnostics go to stderr as the script's `logging.basicConfig`
    sends them (pytest's log capture would keep them from it), and an exception that would end
    the script with a traceback fails the test by itself."""
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("dronewatch: %(levelname)s: %(message)s"))
    console.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(console)
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse: --help, and the option values it refuses
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    finally:
        root.removeHandler(console)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["analyze"],
        ["diff"],
        ["geoip"],
        ["geoip", "info"],
        ["geoip", "lookup"],
        ["rules"],
        ["rules", "lint"],
        ["rules", "list"],
        ["serve"],
        ["replay"],
        ["agent"],
        ["keys"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "revoke"],
        ["analyzers"],
    ],
)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """`--help` works on every command and describes it: through the console script for each
    command that no other test here runs that way, in this process for the subcommands, for
    `analyze` and for no command (both run through the script below)."""
    script = len(command) == 1 and command != ["analyze"]
    proc = run(*command, "--help") if script else run_here(capsys, *command, "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: dronewatch")
    assert len(proc.stdout.splitlines()) > 4


def test_analyze_help_documents_exit_codes() -> None:
    """The analyze help lists every exit code."""
    out = run("analyze", "--help").stdout
    for line in (
        "0  every capture",
        "1  a local-data-mode violation",
        "2  bad usage",
        "3  a capture is damaged",
    ):
        assert line in out


def test_no_command_prints_help_and_exits_2() -> None:
    """Running with no command shows the commands and is a usage error."""
    proc = run()
    assert proc.returncode == EXIT_USAGE
    assert "analyze" in proc.stdout and "diff" in proc.stdout


def test_analyze_prints_summary_and_writes_records(tmp_path: Path) -> None:
    """A readable table on stdout and one JSONL file per record type under --out."""
    proc = run("analyze", "--out", str(tmp_path), str(HTTP))
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "statistical-report.djiservice.org" in proc.stdout
    assert "Records written to" in proc.stdout
    http = read_jsonl(tmp_path / "http.jsonl")
    assert [r["method"] for r in http] == ["GET", "POST"]
    flows = read_jsonl(tmp_path / "flows.jsonl")
    assert len(flows) == 1 and flows[0]["service"] == "http"
    assert {p.name for p in tmp_path.iterdir()} >= {"flows.jsonl", "http.jsonl", "capture.jsonl"}


def test_missing_file_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that does not exist: exit 2 and a message naming it, no traceback."""
    proc = run_here(capsys, "analyze", str(tmp_path / "nope.pcap"))
    assert proc.returncode == EXIT_USAGE
    assert "nope.pcap" in proc.stderr and "Traceback" not in proc.stderr


def test_empty_file_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A zero-length file: exit 2, the message says it is empty and names it."""
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    proc = run_here(capsys, "analyze", "--quiet", str(empty))
    assert proc.returncode == EXIT_USAGE
    assert "empty.pcap at byte offset 0: empty file" in proc.stderr


def test_wrong_magic_is_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file that is not a capture: exit 2, the message gives the magic it found."""
    bad = tmp_path / "notes.pcap"
    bad.write_bytes(b"hello, this is text\n" * 4)
    proc = run_here(capsys, "analyze", "--quiet", str(bad))
    assert proc.returncode == EXIT_USAGE
    assert "not a pcap or pcapng file" in proc.stderr and "Traceback" not in proc.stderr


def test_truncated_file_keeps_records_before_damage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A capture cut mid-packet: exit 3, the offset is named, earlier records are written."""
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(HTTP.read_bytes()[:2500])
    out = tmp_path / "out"
    proc = run_here(capsys, "analyze", "--quiet", "--out", str(out), str(cut))
    assert proc.returncode == EXIT_DAMAGED
    assert "cut.pcap at byte offset 2463" in proc.stderr
    assert len(read_jsonl(out / "http.jsonl")) == 2
    (capture,) = read_jsonl(out / "capture.jsonl")
    assert capture["complete"] is False and capture["packets"] == 16


def test_gzip_and_stdin(tmp_path: Path) -> None:
    """A gzip-compressed capture and a pcap stream on stdin give the same HTTP records."""
    gz = tmp_path / "http.pcap.gz"
    gz.write_bytes(gzip.compress(HTTP.read_bytes()))
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("analyze", "--quiet", "--out", str(a), str(gz)).returncode == EXIT_OK
    proc = run("analyze", "--quiet", "--out", str(b), "-", stdin=HTTP.read_bytes())
    assert proc.returncode == EXIT_OK, proc.stderr
    assert read_jsonl(a / "http.jsonl") == read_jsonl(b / "http.jsonl")


def test_violation_exits_1_and_exports_alerts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """LDM on with a cloud upload: exit 1, alerts in native, ECS and OCSF form."""
    proc = run_here(capsys, "analyze", "--ldm", "on", "--out", str(tmp_path), str(VIOLATION))
    assert proc.returncode == EXIT_VIOLATION
    assert "VIOLATION" in proc.stdout
    alerts = read_jsonl(tmp_path / "alerts.jsonl")
    ecs = read_jsonl(tmp_path / "alerts.ecs.jsonl")
    ocsf = read_jsonl(tmp_path / "alerts.ocsf.jsonl")
    assert len(alerts) == len(ecs) == len(ocsf) >= 1
    assert {a["dest_name"] for a in alerts} == {"mydjiflight.dji.com"}


def test_same_capture_ldm_off_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """Without LDM the same traffic is reported but is no violation."""
    proc = run_here(capsys, "analyze", "--ldm", "off", str(VIOLATION))
    assert proc.returncode == EXIT_OK
    assert "not_applicable" in proc.stdout.lower() or "LDM off" in proc.stdout


def test_usage_error_beats_violation(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file and a violation in one run: exit 2 (documented priority)."""
    proc = run_here(
        capsys, "analyze", "--quiet", "--ldm", "on", str(VIOLATION), str(tmp_path / "gone.pcap")
    )
    assert proc.returncode == EXIT_USAGE


def test_worst_priority() -> None:
    """Exit code priority is usage > violation > damaged > ok."""
    assert worst(EXIT_OK, EXIT_DAMAGED) == EXIT_DAMAGED
    assert worst(EXIT_DAMAGED, EXIT_VIOLATION) == EXIT_VIOLATION
    assert worst(EXIT_VIOLATION, EXIT_USAGE) == EXIT_USAGE
    assert worst(EXIT_USAGE, EXIT_OK) == EXIT_USAGE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--policy", "/nonexistent/policy.yaml"], "policy.yaml"),
        (["--ldm-window", "yesterday"], "not a time"),
        (["--allow-category", "weather"], "--allow-category 'weather'"),
        (["--local-subnet", "10.0.0.0/40"], "10.0.0.0/40"),
        (["--geoip-dir", "/nonexistent"], "not a directory"),
        (["--device", "my phone!"], "--device 'my phone!': not an IP, a MAC"),
        (["--device", "10.0.0.0/33"], "--device '10.0.0.0/33': not a network"),
    ],
)
def test_bad_options_are_one_line_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad option value ends with exit 2 and a message about it, never a traceback."""
    proc = run_here(capsys, "analyze", *args, str(HTTP))
    assert proc.returncode == EXIT_USAGE
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_bad_policy_file_names_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A policy with an unknown key is refused with the file and the key named."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("defaults:\n  ldm: on\n  colour: blue\n")
    proc = run_here(capsys, "analyze", "--policy", str(policy), str(HTTP))
    assert proc.returncode == EXIT_USAGE
    assert "policy.yaml" in proc.stderr and "colour" in proc.stderr


def test_unwritable_out_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An --out that cannot be created is exit 2 with the path named."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run_here(capsys, "analyze", "--out", str(blocker / "sub"), str(HTTP))
    assert proc.returncode == EXIT_USAGE
    assert "cannot create output directory" in proc.stderr


def test_diff_ldm_off_against_on(capsys: pytest.CaptureFixture[str]) -> None:
    """diff lists the cloud destinations that only the LDM-off capture reached."""
    assert main(["diff", "--json", str(LDM_OFF), str(MAPS_ONLY)]) == EXIT_OK
    doc = json.loads(capsys.readouterr().out)
    status = {d["name"]: d["status"] for d in doc["destinations"]}
    assert status["api.mapbox.com"] == "both"
    assert status["flysafe-api.dji.com"] == "only_a"
    assert status["www.skypixel.com"] == "only_a"
    assert "only_b" not in status.values()


def test_diff_unreadable_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """diff against a missing capture is exit 2 with the name in the message."""
    assert main(["diff", str(LDM_OFF), str(tmp_path / "missing.pcap")]) == EXIT_USAGE
    assert "missing.pcap" in capsys.readouterr().err


def test_workers_give_the_output_of_one_process(tmp_path: Path) -> None:
    """Several files over two processes: the same summary, records and exit code as one."""
    files = [str(p) for p in sorted((PCAPS / "scenarios").glob("*.pcap"))]
    one = run("analyze", *files, "--ldm", "on", "--out", str(tmp_path / "one"))
    two = run("analyze", *files, "--ldm", "on", "--out", str(tmp_path / "two"), "--workers", "2")
    assert one.returncode == two.returncode == EXIT_VIOLATION
    assert one.stdout.replace("/one/", "/two/") == two.stdout
    logs = sorted(p.name for p in (tmp_path / "one").glob("*.jsonl"))
    assert logs and logs == sorted(p.name for p in (tmp_path / "two").glob("*.jsonl"))
    for name in logs:
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()


def test_quiet_workers_keep_the_exit_code_and_records(tmp_path: Path) -> None:
    """With --quiet the workers send back only their JSONL lines (no summary is printed), and
    none at all without --out: the exit code, messages and records are those of one process."""
    files = [str(p) for p in sorted((PCAPS / "scenarios").glob("*.pcap"))]
    for out in ([], ["--out", str(tmp_path / "one")]):
        one = run("analyze", *files, "--ldm", "on", "--quiet", *out)
        two = run(
            "analyze", *files, "--ldm", "on", "--quiet", "--workers", "2",
            *[o.replace("one", "two") for o in out],
        )  # fmt: skip
        assert one.returncode == two.returncode == EXIT_VIOLATION
        assert one.stdout == two.stdout == "" and one.stderr == two.stderr
    logs = sorted(p.name for p in (tmp_path / "one").glob("*.jsonl"))
    assert "alerts.ocsf.jsonl" in logs and logs == sorted(
        p.name for p in (tmp_path / "two").glob("*.jsonl")
    )
    for name in logs:
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()


def test_workers_share_one_file_with_the_output_of_one_process(tmp_path: Path) -> None:
    """One file, two processes each making its share of the flows (`dronewatch.core.split`):
    the summary, exit code and every JSONL file of one process."""
    capture = str(PCAPS / "scenarios" / "dji_fly_ldm_on_violation.pcap")
    one = run("analyze", capture, "--ldm", "on", "--out", str(tmp_path / "one"))
    two = run("analyze", capture, "--ldm", "on", "--out", str(tmp_path / "two"), "--workers", "2")
    assert one.returncode == two.returncode == EXIT_VIOLATION
    assert one.stderr == two.stderr
    assert one.stdout.replace("/one/", "/two/") == two.stdout
    logs = sorted(p.name for p in (tmp_path / "one").glob("*.jsonl"))
    assert "alerts.ecs.jsonl" in logs and logs == sorted(
        p.name for p in (tmp_path / "two").glob("*.jsonl")
    )
    for name in logs:
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()


def test_workers_on_stdin_say_one_process_reads_it() -> None:
    data = (PCAPS / "lab" / "dns.pcap").read_bytes()
    proc = run("analyze", "-", "--workers", "2", "--quiet", stdin=data)
    assert proc.returncode == EXIT_OK and "stdin is read by one process" in proc.stderr


def test_workers_on_one_bad_file_give_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    proc = run("analyze", str(bad), "--workers", "2", "--quiet")
    assert proc.returncode == EXIT_USAGE
    assert "not a pcap or pcapng file" in proc.stderr and "Traceback" not in proc.stderr


def test_workers_report_a_bad_file_and_go_on(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    good = str(PCAPS / "lab" / "dns.pcap")
    proc = run("analyze", str(bad), good, "--workers", "2", "--quiet")
    assert proc.returncode == EXIT_USAGE
    assert "not a pcap or pcapng file" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("capture", "shown"),
    [
        ("odid_wifi_bcn_sample.pcap", "MFG1A0123456789"),
        # The early 90:3A:E6 format has no serial: the transmitter is named by its MAC.
        ("beacon_sample.pcap", "MAC 84:cc:a8:60:43:24"),
    ],
)
def test_summary_lists_aircraft_broadcasts(
    capture: str, shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every aircraft heard broadcasting is listed apart from the leaks, with or without serial."""
    proc = run_here(capsys, "analyze", str(PCAPS / "third_party" / "opendroneid" / capture))
    assert proc.returncode == EXIT_OK, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("Aircraft broadcasts"))
    assert "Remote ID, not leaks" in line and shown in line


def test_device_judges_the_named_host_and_no_device_says_how(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without a ground station the summary lists the hosts it considered and how to name one;
    with --device that host gets a verdict, from the reason "named by the user"."""
    wiki = str(PCAPS / "third_party/zeek/wikipedia.pcap")
    assert main(["analyze", "--ldm", "on", wiki]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Verdicts: none: no ground station was recognised and no device was named" in out
    assert "not judged: no drone link" in out
    assert "--device IP|MAC|CIDR|NAME" in out
    assert main(["analyze", "--ldm", "on", "--device", "141.142.220.118", wiki]) == EXIT_VIOLATION
    out = capsys.readouterr().out
    assert "141.142.220.118: VIOLATION: LDM on:" in out and "Local hosts considered" not in out


def test_max_flows_caps_the_flow_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--max-flows N` holds at most N flows: the flows ended early are counted in the capture
    record, named in the summary, and a verdict that would be clean is incomplete; a cap below
    1 is a usage error naming the option."""
    proc = run_here(
        capsys, "analyze", "--ldm", "on", "--max-flows", "5", "--out", str(tmp_path), str(LDM_OFF)
    )
    assert proc.returncode == EXIT_VIOLATION, proc.stderr
    (capture,) = read_jsonl(tmp_path / "capture.jsonl")
    assert capture["evicted_flows"] > 0
    assert f"{capture['evicted_flows']} flows evicted from a full flow table" in proc.stdout
    verdicts = {v["verdict"] for v in read_jsonl(tmp_path / "verdicts.jsonl")}
    assert verdicts == {"violation", "incomplete"}
    bad = run_here(capsys, "analyze", "--max-flows", "0", str(LDM_OFF))
    assert bad.returncode == EXIT_USAGE and "--max-flows 0: must be at least 1" in bad.stderr


def test_stall_bounds_stop_and_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """TLS flows whose ServerHello never shows stop being inspected after the bound: the capture
    record counts them, the summary's capture line and the device's verdict say so, and
    `--stall-packets 0 --stall-bytes 0` (no bound) inspects them to their end; a negative bound
    is a usage error naming the option."""
    from tests.unit.capture.captures import pcap_bytes
    from tests.unit.core.test_inspection_bound import stalled_capture
    from tests.unit.fastpath.test_bulk import PHONE

    path = tmp_path / "stalled.pcap"
    path.write_bytes(pcap_bytes(stalled_capture(1000.0)))
    for flags, stopped in (([], 2), (["--stall-packets", "0", "--stall-bytes", "0"], None)):
        out = tmp_path / f"out{len(flags)}"
        common = ["analyze", "--ldm", "on", "--device", PHONE, "--out", str(out)]
        proc = run_here(capsys, *common, *flags, str(path))
        assert proc.returncode == EXIT_VIOLATION, proc.stderr
        (capture,) = read_jsonl(out / "capture.jsonl")
        assert capture.get("inspection_stopped") == stopped
        (verdict,) = read_jsonl(out / "verdicts.jsonl")
        said = "inspection stopped on 2 flows (their analyzers waited for an answer that never"
        assert (said in proc.stdout, said in str(verdict["msg"])) == (bool(stopped),) * 2
    bad = run_here(capsys, "analyze", "--stall-bytes", "-1", str(path))
    assert bad.returncode == EXIT_USAGE and "--stall-bytes -1: must be 0 (no bound)" in bad.stderr


@pytest.mark.parametrize("flag", ["--top", "--devices", "--alerts"])
def test_summary_bounds_below_one_are_usage_errors(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A summary bound below 1 is a one-line usage error naming the option, before any reading;
    a bound of 1 lists one device and counts the other."""
    bad = run_here(capsys, "analyze", flag, "0", str(LDM_OFF))
    assert bad.returncode == EXIT_USAGE and f"{flag} 0: must be at least 1" in bad.stderr
    assert "Traceback" not in bad.stderr and bad.stdout == ""
    one = run_here(capsys, "analyze", "--devices", "1", str(LDM_OFF))
    assert one.stdout.count("\nDevice ") == 1 and "\n... and 1 more devices (" in one.stdout
