"""Processes that outlive what started them: found by a marker variable in their environment.

The suite sets ``HEADSTART_TEST_SESSION=<uuid>`` in its own environment at start; every process it starts inherits
it (servers, workers, subprocesses, their children, even once reparented to pid 1), so at the end whatever still
carries it was left behind. A process that builds its environment from scratch escapes this check.
"""

from __future__ import annotations

import os
import time
import uuid

import psutil

MARKER = "HEADSTART_TEST_SESSION"


def new_marker() -> str:
    """A fresh marker value, set in this process's environment (so children inherit it) and returned."""
    os.environ[MARKER] = uuid.uuid4().hex
    return os.environ[MARKER]


def marked(marker: str) -> list[psutil.Process]:
    """Live processes, other than this one, whose environment carries ``marker``."""
    return carrying(MARKER, marker)


def carrying(variable: str, value: str) -> list[psutil.Process]:
    """Live processes, other than this one, whose environment sets ``variable`` to ``value`` (as it was when each
    started)."""
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(variable) == value and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:  # gone meanwhile, or not ours to read
            continue
    return found


def wait_for_leftovers(marker: str, grace: float, every: float = 0.5) -> list[psutil.Process]:
    """The marked processes still alive after up to ``grace`` seconds (servers take a while to stop)."""
    deadline = time.monotonic() + grace
    while (left := marked(marker)) and time.monotonic() < deadline:
        time.sleep(every)
    return left


def describe(processes: list[psutil.Process]) -> list[str]:
    """One line per process: pid, parent pid and command line."""
    lines = []
    for process in processes:
        try:
            lines.append(f"pid {process.pid} (parent {process.ppid()}): {' '.join(process.cmdline())}")
        except psutil.Error:
            lines.append(f"pid {process.pid}: gone while being described")
    return lines


def kill(processes: list[psutil.Process], timeout: float = 10.0) -> list[psutil.Process]:
    """SIGKILL each and wait; returns those still alive after ``timeout`` seconds."""
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return alive
