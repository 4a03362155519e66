"""Finished work kept beside the output, so a re-run on a large repository does not redo it.

`OUT.state.jsonl` holds a header (the repository and the SZZ hygiene it was made with) and then one line
per finished item, appended and flushed as it finishes, so an interrupted run loses at most the item in
progress: `{"change": ...}` is a commit's file changes (what the metrics are computed from; the costly
part of the history walk), `{"blame": sha, "inducing": [...]}` is a fix commit's SZZ result (the costly
part of labelling). A re-run with the same repository reuses both; other SZZ options keep the changes and
redo the blames; another repository starts the file afresh.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from sweeper.mining.commits import Change

VERSION = 1


def state_path(out: Path) -> Path:
    return out.with_name(out.name + ".state.jsonl")


class MiningState:
    """Loaded finished work plus an open file to append new work to."""

    def __init__(self, path: Path, repo_key: dict[str, Any], blame_key: dict[str, Any]) -> None:
        self.path = path
        self.changes: dict[str, Change] = {}
        self.blames: dict[str, frozenset[str]] = {}
        header = {"version": VERSION, "repo": repo_key, "szz": blame_key}
        kept = self.load(header)
        self.file: TextIO = path.open("a" if kept else "w", encoding="utf-8")
        if not kept:
            self.write(header)
            for change in self.changes.values():
                self.write({"change": change.to_json()})
            for sha, inducing in self.blames.items():
                self.write({"blame": sha, "inducing": sorted(inducing)})

    def load(self, header: dict[str, Any]) -> bool:
        """Read what an earlier run left; True when the file can be appended to as it is."""
        if not self.path.is_file():
            return False
        rows = []
        clean = True
        try:
            with self.path.open(encoding="utf-8") as lines:
                for line in lines:
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:  # a line cut short by an interruption: what came before is good
                        clean = False
                        break
        except (OSError, UnicodeDecodeError):
            return False
        if not rows or rows[0].get("version") != VERSION or rows[0].get("repo") != header["repo"]:
            print(f"{self.path}: made for another repository or version: starting afresh", file=sys.stderr)
            return False
        same_szz = rows[0].get("szz") == header["szz"]
        for row in rows[1:]:
            if "change" in row:
                change = Change.from_json(row["change"])
                self.changes[change.sha] = change
            elif "blame" in row and same_szz:
                self.blames[row["blame"]] = frozenset(row["inducing"])
        if not same_szz:
            print(f"{self.path}: SZZ options changed: keeping {len(self.changes)} commits, redoing the blames",
                  file=sys.stderr)
        return clean and same_szz and len(rows) == 1 + len(self.changes) + len(self.blames)

    def write(self, row: dict[str, Any]) -> None:
        self.file.write(json.dumps(row, separators=(",", ":")) + "\n")
        self.file.flush()

    def add_change(self, change: Change) -> None:
        self.changes[change.sha] = change
        self.write({"change": change.to_json()})

    def add_blame(self, sha: str, inducing: set[str]) -> None:
        self.blames[sha] = frozenset(inducing)
        self.write({"blame": sha, "inducing": sorted(inducing)})

    def close(self) -> None:
        self.file.close()
