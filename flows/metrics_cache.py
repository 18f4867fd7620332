"""Each metrics source read in the background, so a scrape costs O(1) whatever the registry holds and never waits
on a source: a scrape returns the last good read, or counts the source down (its metrics absent) when its last
read failed or a read has been running longer than its timeout (a hung S3 or API)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from prometheus_client.core import Metric

log = logging.getLogger(__name__)


class SourceCache:
    """One source's metrics, read every ``every`` seconds on a daemon thread of its own."""

    def __init__(self, name: str, read: Callable[[], list[Metric]], every: float, timeout: float) -> None:
        self.name, self._read, self._every, self._timeout = name, read, every, timeout
        self._lock = threading.Lock()
        self._metrics: list[Metric] | None = None
        self._read_at: float | None = None  # unix time the last good read finished
        self._failed = False
        self._reading_since: float | None = None  # monotonic start of the read in flight
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"metrics-{name}", daemon=True)

    def start(self, wait: float) -> None:
        """Start reading; wait up to ``wait`` seconds for the first read, so the first scrape has values."""
        self._thread.start()
        self._first.wait(wait)

    def stop(self) -> None:
        """No further reads (one in flight finishes on its own: the thread is a daemon)."""
        self._stop.set()

    def current(self) -> tuple[list[Metric] | None, float | None]:
        """(the metrics, or None while the source counts as down; unix time of the last good read, if any)."""
        with self._lock:
            hung = self._reading_since is not None and time.monotonic() - self._reading_since > self._timeout
            down = self._failed or hung or self._metrics is None
            return (None if down else self._metrics), self._read_at

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._refresh()
            self._first.set()
            self._stop.wait(self._every)

    def _refresh(self) -> None:
        with self._lock:
            self._reading_since = time.monotonic()
        try:
            metrics = self._read()
        except Exception as exc:  # whatever went wrong, the ops stack sees the same 0 (and the log says what)
            log.warning("metrics: the %s did not answer: %s", self.name, exc)
            with self._lock:
                self._failed, self._reading_since = True, None
            return
        with self._lock:
            self._metrics, self._read_at, self._failed, self._reading_since = metrics, time.time(), False, None
