"""Where sweeper keeps files on a node: the one root that the embedded backbones, the mined commits and the caches of
`sweeper.cache` live under, so that each of them finds it without importing the others."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`$SWEEPER_CACHE`, or `~/.cache/sweeper`: the embedded backbones, mined commits and the caches of trials."""
    return Path(os.environ.get("SWEEPER_CACHE", Path.home() / ".cache" / "sweeper")).expanduser()
