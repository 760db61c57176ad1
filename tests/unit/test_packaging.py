"""A non-editable install carries every subpackage, the rule packs and the bundled GeoIP data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# One worker runs this module (TOGETHER in tests/conftest.py): the session's wheel is built once.


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


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy of what the wheel is made of, so no two builds (another worker, a
    # developer's pip install) share the checkout's build/ directory.
    tree = tmp_path_factory.mktemp("tree")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, tree / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info")
    for name in ("src", "rules"):
        shutil.copytree(ROOT / name, tree / name, ignore=ignore)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(tree)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (built,) = out.glob("dronewatch-*.whl")
    return zipfile.ZipFile(built)


def test_wheel_carries_rule_packs(wheel: zipfile.ZipFile) -> None:
    """Every pack in rules/ is inside the wheel as dronewatch/rules/<name>.yaml."""
    names = set(wheel.namelist())
    packs = {f"dronewatch/rules/{p.name}" for p in (ROOT / "rules").glob("*.yaml")}
    assert packs and packs <= names


def test_wheel_carries_geoip_data(wheel: zipfile.ZipFile) -> None:
    """The bundled databases and their provenance file are inside the wheel."""
    names = set(wheel.namelist())
    for f in ("dbip-country-lite.mmdb", "ip-location-db-asn.mmdb", "SOURCES.json"):
        assert f"dronewatch/geoip/data/{f}" in names


def test_wheel_carries_every_module(wheel: zipfile.ZipFile) -> None:
    """Every .py file under src/dronewatch is in the wheel."""
    names = set(wheel.namelist())
    modules = {
        p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "dronewatch").rglob("*.py")
    }
    assert modules - names == set()


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
    extension."""
    code = (
        "import sys; from dronewatch.cli.app import main; "
        "main(['analyze', '--quiet', '--no-progress', sys.argv[1]]); "
        "print('numpy' in sys.modules, 'dpkt' in sys.modules)"
    )
    base = {k: v for k, v in os.environ.items() if k != "DRONEWATCH_NO_C"}
    cases = [
        ("lab/dns.pcap", {}, "False False"),
        ("lab/http.pcap", {}, "False False"),
        ("third_party/wsensing2021/Normal_Establishing_connection_01.pcapng", {}, "False True"),
        ("third_party/opendroneid/beacon_sample.pcap", {}, "False False"),  # 802.11: per packet
        ("lab/dns.pcap", {"DRONEWATCH_NO_C": "1"}, "False False"),
    ]
    for capture, env, imported in cases:
        out = subprocess.run(
            [sys.executable, "-c", code, str(ROOT / "pcaps" / capture)],
            capture_output=True,
            text=True,
            check=True,
            env={**base, **env},
        ).stdout
        assert out.strip() == imported, capture


def test_wheel_carries_the_c_extension(wheel: zipfile.ZipFile) -> None:
    """The wheel holds the compiled extension and its type stub."""
    names = wheel.namelist()
    assert any(n.startswith("dronewatch/fastpath/_fastpath.") and n.endswith(".so") for n in names)
    assert "dronewatch/fastpath/_fastpath.pyi" in names
