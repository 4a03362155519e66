"""Timing events, for profiling where a sweep's time goes (`bench/overhead_profile.py` reads them).

Off unless `SWEEPER_TIMINGS` names a file: then each `timed(phase)` block appends one JSON line
`{"phase", "start", "seconds", "pid", "thread", ...}` to it. The driver and the Ray workers of one machine share
the file and its clock; when off, a block costs one environment lookup.

    >>> with timed("trial.prepare"):
    ...     pass
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

VARIABLE = "SWEEPER_TIMINGS"


@contextmanager
def timed(phase: str, **fields: Any) -> Iterator[None]:
    """Time the block as `phase` (with any JSON-able `fields`) when timing events are on."""
    path = os.environ.get(VARIABLE)
    if not path:
        yield
        return
    started = time.time()
    try:
        yield
    finally:
        event = {"phase": phase, "start": started, "seconds": time.time() - started, "pid": os.getpid(),
                 "thread": threading.current_thread().name, **fields}
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(descriptor, (json.dumps(event) + "\n").encode())  # one write per line: safe across processes
        finally:
            os.close(descriptor)
