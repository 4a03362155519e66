"""What the caches hold, and trimming them, least recently used first.

An entry is one folder of `$SWEEPER_CACHE/frozen` or `$SWEEPER_CACHE/encoded` (the embedded backbones and the
studies are not caches: they are left alone). Its last use is its folder's modification time, which
`cached_folder` refreshes on every hit. Removing an entry is safe while a trial reads it: a trial's memory-mapped
files stay readable until it closes them, and the next trial that needs the entry builds it again.

    >>> parse_size("1.5G"), parse_size("200M"), parse_age("7d"), parse_age("12h")
    (1610612736, 209715200, 604800.0, 43200.0)
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from sweeper.cache import ABOUT_FILE
from sweeper.folders import cache_dir

KINDS = ("frozen", "encoded")
UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
AGES = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


@dataclass(frozen=True)
class Entry:
    """One cache entry: its kind (frozen, encoded), key (its folder's name), size and last use (epoch seconds)."""

    kind: str
    path: Path
    size: int
    last_used: float

    @property
    def key(self) -> str:
        return self.path.name

    @property
    def about(self) -> dict[str, str]:
        """What the entry was built for (backbone, data; the frozen layer), as far as it recorded it."""
        try:
            return json.loads((self.path / ABOUT_FILE).read_text())
        except (OSError, ValueError):
            return {}

    @property
    def owner(self) -> str:
        """The backbone and data it serves, in words."""
        about = self.about
        return " on ".join(filter(None, [about.get("backbone"), about.get("data")])) or "(not recorded)"


def entries(root: Path | None = None, kinds: tuple[str, ...] = KINDS) -> list[Entry]:
    """Every complete entry of `kinds` under `root` (default `$SWEEPER_CACHE`), least recently used first."""
    root = root or cache_dir()
    found = []
    for kind in kinds:
        folder = root / kind
        for path in folder.iterdir() if folder.is_dir() else []:
            if path.is_dir() and not path.name.endswith(".partial"):
                size = sum(item.stat().st_size for item in path.rglob("*") if item.is_file())
                found.append(Entry(kind, path, size, path.stat().st_mtime))
    return sorted(found, key=lambda entry: entry.last_used)


def trim(found: list[Entry], *, older_than: float | None = None, max_size: int | None = None,
         now: float | None = None) -> list[Entry]:
    """Remove the entries unused for `older_than` seconds, then the least recently used ones until the rest take
    at most `max_size` bytes; returns the removed ones."""
    now = time.time() if now is None else now
    removed = [entry for entry in found if older_than is not None and now - entry.last_used > older_than]
    kept = [entry for entry in found if entry not in removed]
    while max_size is not None and kept and sum(entry.size for entry in kept) > max_size:
        removed.append(kept.pop(0))  # least recently used first
    for entry in removed:
        with FileLock(f"{entry.path}.lock"):  # not while a trial of this node builds it
            shutil.rmtree(entry.path, ignore_errors=True)
    return removed


def parse_size(text: str) -> int:
    """`500M`, `2G`, `1.5T` (binary units; a bare number is bytes)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"'{text}' is not a size: write it as 500M, 2G or 1.5T")
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def parse_age(text: str) -> float:
    """`30m`, `12h`, `7d`, `2w` in seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhdw])\s*", text, re.IGNORECASE)
    if not match:
        raise ValueError(f"'{text}' is not an age: write it as 30m, 12h, 7d or 2w")
    return float(match.group(1)) * AGES[match.group(2).lower()]
