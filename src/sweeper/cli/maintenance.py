"""The commands that need no Ray: `check` (a spec and its data, as a sweep checks them before its first trial) and
`cache` (list and trim what the caches hold)."""

from __future__ import annotations

import argparse
import datetime
import json

from sweeper.errors import SweeperError


def cmd_check(args: argparse.Namespace) -> int:
    from sweeper.spec import load_spec
    from sweeper.sweep.preflight import check_before_trials

    spec = load_spec(args.spec)
    dataset, _ = check_before_trials(spec, args.spec)  # prints the resolution line
    searched = ", ".join(spec.search) or "nothing"
    print(f"{args.spec}: ok: {spec.task}, {len(dataset.records)} commits read from {spec.data.path}, backbone "
          f"{spec.backbone}; {spec.sweep.trials} trials searching {searched}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from sweeper.folders import cache_dir
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


def add_check_command(commands: argparse._SubParsersAction) -> None:
    check = commands.add_parser("check", help="check a spec and its data in seconds, without Ray",
                                description="Load the spec, read and split its data, apply every method the search "
                                            "can pick to the backbone's shapes, and print what the validation split "
                                            "can resolve: what `sweeper run` checks before its first trial.")
    check.add_argument("spec", help="YAML sweep spec")
    check.set_defaults(command=cmd_check)


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
