"""One background thread that makes a sweep driver's MLflow requests, in order, so trial events never wait for them."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from sweeper.timings import timed


class BackgroundWriter:
    """Runs tracking calls one at a time, in the order they were submitted, on a thread of its own.

    A sweep's driver hands its MLflow writes to it so that it never waits for the tracking server between trial
    events: Ray Tune reports synchronously (a trial's training thread waits in `tune.report` until the driver has
    processed the result) and starts the next trial only after the callbacks of the last one returned, so every
    request made in a callback would otherwise add to the trials' wall time. The first call that raises stops the
    writer: the calls after it are dropped, and the error is raised in the submitting thread by the next `submit`,
    `flush` or `raise_error`. Call `flush` before reading what was written.
    """

    def __init__(self, name: str = "sweeper-tracking") -> None:
        self.name = name
        self._calls: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._failed = False
        self._error: BaseException | None = None

    def submit(self, call: Callable[..., Any], *args: Any) -> None:
        """Queue `call(*args)`; raises the error that stopped the writer, if that has not been raised yet."""
        self.raise_error()
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        self._calls.put((call, args))

    def flush(self) -> None:
        """Wait until every submitted call has run (or was dropped after an error), then raise that error if any."""
        if self._thread is not None:
            self._calls.join()
        self.raise_error()

    def raise_error(self) -> None:
        """Raise the error that stopped the writer, once."""
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _run(self) -> None:
        while True:
            call, args = self._calls.get()
            try:
                if not self._failed:
                    with timed(f"mlflow.{getattr(call, '__name__', 'call')}"):
                        call(*args)
            except BaseException as error:  # noqa: BLE001 - handed to the submitting thread
                self._failed, self._error = True, error
            finally:
                self._calls.task_done()
