"""Where the test captures are."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
THIRD_PARTY = PCAPS / "third_party"
GOLDEN = ROOT / "tests" / "golden"

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz")


def all_captures() -> list[Path]:
    """Every capture under pcaps/, sorted."""
    return sorted(p for p in PCAPS.rglob("*") if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES))
