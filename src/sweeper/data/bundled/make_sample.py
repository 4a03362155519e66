"""Rebuild the bundled samples from the shared datasets (run once by maintainers, not at install).

    python src/sweeper/data/bundled/make_sample.py ../shared/data

Takes a seeded random sample of each file, keeps the commit order (project, then time), and cuts
diffs to their first 120 lines (followed by a `[diff truncated]` line, as the shared data does),
so the package stays a few MB.
"""

import gzip
import json
import random
import sys
from pathlib import Path

MAX_DIFF_LINES = 120
SAMPLES = {"jitdp/jit-defects4j-a.jsonl.gz": ("jitdp-sample.jsonl.gz", 2000),
           "cmg/python-commits.jsonl.gz": ("cmg-sample.jsonl.gz", 2000)}


def cut_diff(diff: str) -> str:
    lines = diff.split("\n")
    if len(lines) <= MAX_DIFF_LINES:
        return diff
    return "\n".join(lines[:MAX_DIFF_LINES] + ["[diff truncated]"])


def main(shared: Path) -> None:
    out_dir = Path(__file__).parent
    for source, (target, count) in SAMPLES.items():
        with gzip.open(shared / source, "rt", encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle]
        keep = sorted(random.Random(0).sample(range(len(rows)), count))
        with gzip.open(out_dir / target, "wt", encoding="utf-8") as handle:
            for index in keep:
                row = dict(rows[index])
                row["diff"] = cut_diff(row["diff"])
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{target}: {count} of {len(rows)} rows")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
