"""Work the trials of a sweep share on one node: the encoded data (`encoded.py`) and the output of frozen layers
(`frozen.py`), each built once, by the first trial that needs it, into `$SWEEPER_CACHE` (default `~/.cache/sweeper`).

Files, not Ray's object store: a file lock lets one trial of a node build while the others wait, and an atomic
rename publishes the result whole; the same cache serves `sweeper train`, `reproduce` and tests (no Ray there),
outlives a restarted worker and a resumed sweep, and the frozen layers' output, memory-mapped, is shared between
concurrent trials by the OS page cache without a copy per trial and without holding it all in memory.
A cache folder is named by a digest of everything its content depends on, so a stale entry is never read;
`sweeper cache` lists the entries and trims them (`inventory.py`); a sweep trims the frozen-prefix cache to its budget.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from sweeper.folders import cache_dir

__all__ = ["ABOUT_FILE", "cached_folder", "digest"]


def digest(parts: dict[str, Any]) -> str:
    """A short, stable digest of JSON-able `parts` (keys sorted): the name of a cache entry.

        >>> digest({"b": 1, "a": [2, 3]}) == digest({"a": [2, 3], "b": 1})
        True
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


ABOUT_FILE = "about.json"  # in each entry: what it was built for (backbone, data), for `sweeper cache`


def cached_folder(kind: str, key: str, build: Callable[[Path], None],
                  about: dict[str, str] | None = None) -> tuple[Path, bool]:
    """`$SWEEPER_CACHE/kind/key`, made by `build(folder)` if it is missing; and whether this call built it.
    `about` (what the entry was built for) is written beside the content.

    One process of the node builds under a file lock while the others wait; it builds into a temporary folder
    beside the target and renames it into place, so a reader never sees a half-written entry.
    """
    target = cache_dir() / kind / key
    if target.is_dir():
        os.utime(target)  # its last use, for `sweeper cache` and the sweep's trim (least recently used first)
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{target}.lock"):
        if target.is_dir():
            return target, False
        partial = Path(tempfile.mkdtemp(prefix=f"{key}.", suffix=".partial", dir=target.parent))
        try:
            build(partial)
            (partial / ABOUT_FILE).write_text(json.dumps(about or {}))
            partial.rename(target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return target, True
