"""A non-editable install carries every subpackage, the rule packs, the bundled GeoIP data and
the C extension: a wheel built as pip builds one, in an isolated build environment whose
setuptools comes from the package index (a real server, hence a system test)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


def test_wheel_carries_the_c_extension(wheel: zipfile.ZipFile) -> None:
    """The wheel holds the compiled extension and its type stub."""
    names = wheel.namelist()
    assert any(n.startswith("dronewatch/fastpath/_fastpath.") and n.endswith(".so") for n in names)
    assert "dronewatch/fastpath/_fastpath.pyi" in names
