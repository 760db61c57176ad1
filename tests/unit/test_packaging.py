"""Every subpackage is listed for packaging, the C extension is built, and `analyze` imports only
what it needs (the wheel's contents: tests/system/test_wheel.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _listed_packages() -> list[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages: list[str] = data["tool"]["setuptools"]["packages"]
    return packages


def test_every_source_package_is_listed() -> None:
    """Each directory with an __init__.py under src/ is in pyproject's package list."""
    found = {
        ".".join(p.parent.relative_to(ROOT / "src").parts)
        for p in (ROOT / "src").rglob("__init__.py")
    }
    assert found - set(_listed_packages()) == set()


def test_c_extension_is_built() -> None:
    """The install built dronewatch.fastpath._fastpath with its frame counters (gcc is part of the
    set-up): without it the per-packet path and the Python counters run, with the same records but
    slower, and nothing else would notice."""
    try:
        from dronewatch.fastpath import _fastpath
    except ImportError as exc:
        pytest.fail(
            f"the C extension was not built ({exc}): install gcc and the Python headers, then "
            "pip install -e . again"
        )
    assert callable(_fastpath.walk) and callable(_fastpath.record_fields)
    for counter in (_fastpath.DumlCounter, _fastpath.ArsdkCounter, _fastpath.MavlinkCounter):
        assert issubclass(counter, _fastpath.FrameCounter)


def test_c_path_runs_without_numpy_or_unneeded_dpkt() -> None:
    """`analyze` on a pcap file never imports numpy (a tenth of its start-up), and imports dpkt
    only for the DHCP messages it parses (HTTP is read by its own parser), with or without the C
    extension. Each process analyzes its captures in turn and prints what was imported after
    each (an import stays, so the captures that need neither go first)."""
    code = (
        "import sys; from dronewatch.cli.app import main\n"
        "for path in sys.argv[1:]:\n"
        "    main(['analyze', '--quiet', '--no-progress', path])\n"
        "    print('numpy' in sys.modules, 'dpkt' in sys.modules)"
    )
    base = {k: v for k, v in os.environ.items() if k != "DRONEWATCH_NO_C"}
    runs = [
        (
            {},
            [
                ("lab/dns.pcap", "False False"),
                ("lab/http.pcap", "False False"),
                ("third_party/opendroneid/beacon_sample.pcap", "False False"),  # 802.11
                ("third_party/wsensing2021/Normal_Establishing_connection_01.pcapng", "False True"),
            ],
        ),
        ({"DRONEWATCH_NO_C": "1"}, [("lab/dns.pcap", "False False")]),
    ]
    for env, cases in runs:
        out = subprocess.run(
            [sys.executable, "-c", code, *(str(ROOT / "pcaps" / c) for c, _ in cases)],
            capture_output=True,
            text=True,
            check=True,
            env={**base, **env},
        ).stdout
        assert out.split("\n")[: len(cases)] == [imported for _, imported in cases], env


def test_the_installed_command_freezes_what_the_run_leaves() -> None:
    """The console script is `cli`: it returns `main`'s exit code and leaves the objects of the
    run frozen, so the interpreter's collection at exit skips them."""
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    assert scripts["dronewatch"] == "dronewatch.cli.app:cli"
    code = (
        "import gc, sys; from dronewatch.cli.app import cli\n"
        "sys.argv = ['dronewatch', 'analyze', '--quiet', '--no-progress', sys.argv[1]]\n"
        "print(cli(), gc.get_freeze_count() > 1000)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "pcaps" / "lab" / "dns.pcap")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == ["0", "True"]
