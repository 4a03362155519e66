"""Timing events, for profiling where a sweep's time goes (`bench/overhead_profile.py` reads them).

Off unless `SWEEPER_TIMINGS` names a file: then each `timed(phase)` block appends one JSON line
`{"phase", "start", "seconds", "pid", "thread", ...}` to it. The driver and the Ray workers of one machine share
the file and its clock; when off, a block costs one environment lookup. Fields the block learns as it runs go in
the dict it is given:

    >>> with timed("trial.prepare") as event:
    ...     event["commits"] = 120
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
def timed(phase: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """Time the block as `phase` when timing events are on, with any JSON-able `fields`: those given here and those
    the block puts in the dict it gets."""
    path = os.environ.get(VARIABLE)
    if not path:
        yield fields
        return
    started = time.time()
    try:
        yield fields
    finally:
        event = {"phase": phase, "start": started, "seconds": time.time() - started, "pid": os.getpid(),
                 "thread": threading.current_thread().name, **fields}
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(descriptor, (json.dumps(event) + "\n").encode())  # one write per line: safe across processes
        finally:
            os.close(descriptor)
