"""Progress of long steps (epochs, batches, feature extraction) for whoever listens.

The CLI installs a reporter that draws rich bars on a terminal; under a Prefect worker nobody listens and the
steps' INFO logs (one line per epoch) carry the progress to the run's logs in the UI.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from typing import Protocol, TypeVar

T = TypeVar("T")


class Reporter(Protocol):
    """Receives the steps' progress: one handle per tracked piece of work."""

    def start(self, description: str, total: int, completed: int) -> Hashable: ...

    def advance(self, handle: Hashable, steps: int) -> None: ...

    def finish(self, handle: Hashable, transient: bool) -> None: ...


_reporter: Reporter | None = None


def set_reporter(reporter: Reporter | None) -> Reporter | None:
    """Install ``reporter`` process-wide (flows run their tasks in worker threads); returns the previous one."""
    global _reporter
    previous, _reporter = _reporter, reporter
    return previous


@contextmanager
def tracked(description: str, total: int, completed: int = 0, transient: bool = False) -> Iterator[Callable]:
    """Yield ``advance(steps=1)`` for a piece of work of ``total`` steps (``completed`` already done, on resume).
    Transient work (the batches of one epoch) disappears from the display when done."""
    reporter = _reporter
    if reporter is None:
        yield lambda steps=1: None
        return
    handle = reporter.start(description, total, completed)
    try:
        yield lambda steps=1: reporter.advance(handle, steps)
    finally:
        reporter.finish(handle, transient)


def iterate(items: Iterable[T], description: str, total: int, transient: bool = True) -> Iterator[T]:
    """``items`` unchanged, advancing a tracked piece of work per item (a DataLoader's batches, say)."""
    with tracked(description, total, transient=transient) as advance:
        for item in items:
            yield item
            advance()
