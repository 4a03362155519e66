"""`sweeper cache`: what the caches hold, grouped by what they were built for, and trimming, least recently used
first (by age, then by size); a sweep trims the frozen-prefix cache to its budget."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from sweeper.cache import ABOUT_FILE, cached_folder
from sweeper.cache.frozen import trim_to_budget
from sweeper.cache.inventory import entries, trim
from sweeper.cli import main

DAY = 86400.0


def entry(kind: str, key: str, size: int, used: float, backbone: str = "embedded") -> None:
    """An entry made as the caches make theirs, then dated `used` (epoch seconds)."""
    folder, built = cached_folder(kind, key, lambda into: (into / "states.npy").write_bytes(b"x" * size),
                                  about={"backbone": backbone, "data": "bundled:jitdp"})
    assert built
    os.utime(folder, (used, used))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SWEEPER_CACHE", str(tmp_path))
    now = time.time()
    entry("frozen", "old", 3000, now - 10 * DAY)
    entry("frozen", "mid", 2000, now - 2 * DAY, backbone="microsoft/codebert-base")
    entry("encoded", "new", 1000, now - 0.5 * DAY)
    return tmp_path


def test_entries_are_listed_least_recently_used_first_with_what_they_serve(cache: Path) -> None:
    found = entries()
    assert [(e.kind, e.key) for e in found] == [("frozen", "old"), ("frozen", "mid"), ("encoded", "new")]
    assert [e.size - len(json.dumps(e.about)) for e in found] == [3000, 2000, 1000]  # content plus about.json
    assert found[1].owner == "microsoft/codebert-base on bundled:jitdp"


def test_trim_by_age_then_by_size(cache: Path) -> None:
    now = time.time()
    removed = trim(entries(), older_than=7 * DAY, now=now)
    assert [e.key for e in removed] == ["old"] and not (cache / "frozen" / "old").exists()
    removed = trim(entries(), max_size=1500, now=now)  # mid (2,000 bytes) goes, new (1,000) stays
    assert [e.key for e in removed] == ["mid"] and [e.key for e in entries()] == ["new"]


def test_a_hit_counts_as_a_use(cache: Path) -> None:
    cached_folder("frozen", "old", lambda into: pytest.fail("an existing entry is not built again"))
    assert entries()[-1].key == "old"  # now the most recently used


def test_a_sweep_trims_the_frozen_cache_to_its_budget(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWEEPER_FROZEN_CACHE_GB", str(2500 / 2**30))
    assert [e.key for e in trim_to_budget()] == ["old"]  # the encoded cache is not the frozen budget's
    assert {e.key for e in entries()} == {"mid", "new"}


def test_cache_command_lists_and_trims(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache"]) == 0
    listed = capsys.readouterr().out
    assert "3 entries" in listed and "frozen   microsoft/codebert-base on bundled:jitdp: 1 entries" in listed
    assert main(["cache", "--older-than", "7d", "--json"]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert [e["key"] for e in outcome["removed"]] == ["old"] and len(outcome["entries"]) == 2
    assert main(["cache", "--max-size", "lots"]) == 2
    assert "'lots' is not a size: write it as 500M, 2G or 1.5T" in capsys.readouterr().err
    assert ABOUT_FILE == "about.json"
