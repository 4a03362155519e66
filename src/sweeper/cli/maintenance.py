"""The commands that look after this machine's state: `cache` (list and trim what the caches hold)."""

from __future__ import annotations

import argparse
import datetime
import json

from sweeper.errors import SweeperError


def cmd_cache(args: argparse.Namespace) -> int:
    from sweeper.cache import cache_dir
    from sweeper.cache.inventory import entries, parse_age, parse_size, trim

    try:
        older_than = parse_age(args.older_than) if args.older_than else None
        max_size = parse_size(args.max_size) if args.max_size else None
    except ValueError as error:
        raise SweeperError(f"sweeper cache: {error}") from None
    kinds = (args.kind,) if args.kind else ("frozen", "encoded")
    removed = trim(entries(kinds=kinds), older_than=older_than, max_size=max_size) if (
        older_than is not None or max_size is not None) else []
    kept = entries(kinds=kinds)
    if args.json:
        print(json.dumps({"root": str(cache_dir()), "entries": [entry_json(entry) for entry in kept],
                          "removed": [entry_json(entry) for entry in removed]}))
        return 0
    print(f"{cache_dir()}: {len(kept)} entries, {megabytes(sum(entry.size for entry in kept))}")
    groups: dict[tuple[str, str], list] = {}
    for entry in reversed(kept):  # most recently used first
        groups.setdefault((entry.kind, entry.owner), []).append(entry)
    for (kind, owner), members in groups.items():
        print(f"  {kind:8} {owner}: {len(members)} entries, {megabytes(sum(entry.size for entry in members))}, "
              f"last used {when(members[0].last_used)}")
        for entry in members[:args.entries]:
            print(f"    {entry.key}  {megabytes(entry.size):>10}  last used {when(entry.last_used)}")
    if removed:
        print(f"removed {len(removed)} entries, {megabytes(sum(entry.size for entry in removed))}: "
              + ", ".join(f"{entry.kind}/{entry.key[:12]}" for entry in removed))
    return 0


def entry_json(entry) -> dict:
    return {"kind": entry.kind, "key": entry.key, "bytes": entry.size, **entry.about,
            "last_used": datetime.datetime.fromtimestamp(entry.last_used, datetime.timezone.utc).isoformat()}


def megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def when(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")


def add_cache_command(commands: argparse._SubParsersAction) -> None:
    cache = commands.add_parser("cache", help="list what the encoding and frozen-prefix caches hold; trim them",
                                description="Without options: list the cache entries (kind, key, size, last use). "
                                            "With --older-than or --max-size: remove entries, least recently used "
                                            "first. Running trials keep reading what they opened.")
    cache.add_argument("--older-than", metavar="AGE", help="remove entries unused for AGE: 30m, 12h, 7d, 2w")
    cache.add_argument("--max-size", metavar="SIZE", help="then remove the least recently used until the rest "
                                                          "take at most SIZE: 500M, 2G")
    cache.add_argument("--kind", choices=["frozen", "encoded"], help="only this cache (default both)")
    cache.add_argument("--entries", type=int, default=3, metavar="N",
                       help="list the N most recently used entries of each backbone and data (default 3)")
    cache.add_argument("--json", action="store_true", help="a JSON object: root, entries, removed")
    cache.set_defaults(command=cmd_cache)
