"""A progress line on stderr every so many items, with the rate, for runs that take minutes."""

from __future__ import annotations

import sys
import time


class MiningProgress:
    """`tick()` once per item; prints `what: done/total (rate/s)` every `every` items and at `done()`."""

    def __init__(self, what: str, total: int, every: int, quiet: bool = False) -> None:
        self.what, self.total, self.every, self.quiet = what, total, every, quiet
        self.count = 0
        self.start = time.monotonic()

    def tick(self) -> None:
        self.count += 1
        if self.every > 0 and self.count % self.every == 0:
            self.show()

    def show(self) -> None:
        if self.quiet:
            return
        seconds = max(time.monotonic() - self.start, 1e-9)
        print(f"{self.what}: {self.count}/{self.total} ({self.count / seconds:.1f}/s, {seconds:.0f} s)",
              file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.every > 0 and self.count % self.every != 0:
            self.show()
