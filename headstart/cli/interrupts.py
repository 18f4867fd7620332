"""SIGTERM stops a command the way Ctrl-C does.

Python's default SIGTERM ends the process at once: no ``finally``, no context manager exit, no atexit hook. What
the command started then outlives it, reparented to pid 1: Prefect's temporary server (stopped by an atexit
hook), a sweep's Dask workers (stopped when the task runner's context exits), torchrun and its ranks (stopped in
a ``finally``). Raising KeyboardInterrupt instead unwinds through all of those, as Ctrl-C does.
"""

from __future__ import annotations

import signal
from types import FrameType


def sigterm_as_ctrl_c() -> None:
    """From now on (main thread only) SIGTERM raises KeyboardInterrupt once; later ones are ignored, so a second
    SIGTERM cannot break off the cleanup the first one started."""
    signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # a Python handler, not SIG_IGN: that one would be inherited by processes started during the cleanup
    signal.signal(signal.SIGTERM, _ignore)
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Already stopping."""
