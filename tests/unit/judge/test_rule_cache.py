"""The cache of validated rule packs (`rulepack.load_packs`): read back only while every input is
unchanged, never trusted when others could have written it, never in the way of an error."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

from dronewatch.judge import rulepack
from dronewatch.judge.rulepack import RulePackLintError, load_packs

from .test_rulepack import GOOD_RULE, HEADER, write


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache directory of this test's own (`$XDG_CACHE_HOME/dronewatch`)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "dronewatch"


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the packs were validated (`check_packs` run), one entry per run."""
    runs: list[int] = []
    real = rulepack.check_packs

    def counted(*args: object, **kwargs: object) -> object:
        runs.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rulepack, "check_packs", counted)
    return runs


def cached_files(cache: Path) -> list[Path]:
    return sorted(cache.glob("rules-*.pickle"))


def test_second_load_reads_the_cache(tmp_path: Path, cache: Path, validations: list[int]) -> None:
    packs = tmp_path / "packs"
    write(packs, "sample.yaml", HEADER + GOOD_RULE)
    first = load_packs([packs])
    assert len(validations) == 1
    assert len(cached_files(cache)) == 1
    again = load_packs([packs])
    assert len(validations) == 1  # not validated again
    assert again == first
    assert again.get("acme.cloud.api") == first.get("acme.cloud.api")
    assert again.origins["acme.cloud.api"].path == packs / "sample.yaml"
    # The cache directory is the user's alone.
    assert cache.stat().st_mode & 0o777 == 0o700


def test_a_changed_pack_is_validated_again(
    tmp_path: Path, cache: Path, validations: list[int]
) -> None:
    packs = tmp_path / "packs"
    write(packs, "sample.yaml", HEADER + GOOD_RULE)
    assert load_packs([packs]).get("acme.cloud.api").confidence == 0.9  # type: ignore[union-attr]
    write(packs, "sample.yaml", HEADER + GOOD_RULE.replace("0.9", "0.7"))
    assert load_packs([packs]).get("acme.cloud.api").confidence == 0.7  # type: ignore[union-attr]
    assert len(validations) == 2
    # A pack added to the directory is an input too.
    write(packs, "other.yaml", (HEADER + GOOD_RULE).replace("acme", "bravo").replace("sample", "o"))
    assert load_packs([packs]).get("bravo.cloud.api") is not None
    assert len(validations) == 3
    assert len(cached_files(cache)) == 3


def test_invalid_packs_are_reported_every_time_and_never_cached(
    tmp_path: Path, cache: Path
) -> None:
    packs = tmp_path / "packs"
    write(packs, "sample.yaml", HEADER + GOOD_RULE.replace("telemetry", "telepathy"))
    for _ in range(2):
        with pytest.raises(RulePackLintError, match="category"):
            load_packs([packs])
    assert cached_files(cache) == []


def test_an_empty_pack_directory_is_warned_about_every_time(
    tmp_path: Path, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "empty").mkdir()
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="dronewatch.judge.rulepack"):
            load_packs([tmp_path / "empty"])
        assert "no rule packs" in caplog.text


def test_a_damaged_cache_file_is_made_again(
    tmp_path: Path, cache: Path, validations: list[int]
) -> None:
    packs = tmp_path / "packs"
    write(packs, "sample.yaml", HEADER + GOOD_RULE)
    first = load_packs([packs])
    (path,) = cached_files(cache)
    for damage in (b"", b"not a pickle", path.read_bytes()[:100]):
        path.write_bytes(damage)
        assert load_packs([packs]) == first
    assert len(validations) == 4
    assert load_packs([packs]) == first  # the last one wrote it whole again
    assert len(validations) == 4


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_a_cache_others_may_write_is_not_read(
    tmp_path: Path, cache: Path, validations: list[int]
) -> None:
    packs = tmp_path / "packs"
    write(packs, "sample.yaml", HEADER + GOOD_RULE)
    load_packs([packs])
    (path,) = cached_files(cache)
    path.chmod(0o666)
    load_packs([packs])
    assert len(validations) == 2  # a group- or world-writable file is not unpickled
    path.chmod(0o600)
    cache.chmod(0o777)
    load_packs([packs])
    assert len(validations) == 3  # nor one in a directory others may write
    cache.chmod(0o700)
    load_packs([packs])
    assert len(validations) == 3


def test_an_unwritable_cache_does_not_stop_loading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, validations: list[int]
) -> None:
    # XDG_CACHE_HOME is a file: no directory can be made under it.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    packs = tmp_path / "packs"
    write(packs, "sample.yaml", HEADER + GOOD_RULE)
    assert load_packs([packs]).get("acme.cloud.api") is not None
    assert load_packs([packs]).get("acme.cloud.api") is not None
    assert len(validations) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-directory", "packs"]


def test_only_the_newest_cached_sets_are_kept(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rulepack, "_CACHE_KEEP", 2)
    packs = tmp_path / "packs"
    for confidence in ("0.5", "0.6", "0.7"):
        write(packs, "sample.yaml", HEADER + GOOD_RULE.replace("0.9", confidence))
        load_packs([packs])
    assert len(cached_files(cache)) == 2
    # The newest is among them: loading the last packs again reads the cache.
    kept = {p.read_bytes() for p in cached_files(cache)}
    load_packs([packs])
    assert {p.read_bytes() for p in cached_files(cache)} == kept


def test_no_home_directory_loads_without_a_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, validations: list[int]
) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", no_home)
    packs = tmp_path / "packs"
    write(packs, "sample.yaml", HEADER + GOOD_RULE)
    assert load_packs([packs]).get("acme.cloud.api") is not None
    assert load_packs([packs]).get("acme.cloud.api") is not None
    assert len(validations) == 2
