"""The session-end check's finder: a real orphaned process carrying the marker is found, named and killed; one
with another marker is left alone."""

from __future__ import annotations

import os
import subprocess
import uuid

import psutil

from tests.support.leftovers import MARKER, describe, kill, marked, wait_for_leftovers
from tests.support.waiting import wait_for


def orphaned_sleep(marker: str) -> psutil.Process:
    """A ``sleep`` whose parent shell has exited (reparented, as a forgotten server would be), with ``marker``."""
    shell = subprocess.run(
        ["sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!"],
        env={**os.environ, MARKER: marker},
        capture_output=True,
        text=True,
        check=True,
    )
    return psutil.Process(int(shell.stdout))


def test_an_orphan_with_the_marker_is_found_named_and_killed() -> None:
    marker, other = uuid.uuid4().hex, uuid.uuid4().hex  # not the session's: this test's orphans fail no session
    orphan, bystander = orphaned_sleep(marker), orphaned_sleep(other)
    try:
        assert orphan.ppid() != os.getpid()  # the shell that started it is gone
        left = wait_for_leftovers(marker, grace=1.0, every=0.1)
        assert [p.pid for p in left] == [orphan.pid]  # the bystander carries another marker
        [line] = describe(left)
        assert line.startswith(f"pid {orphan.pid} ") and line.endswith("sleep 600")
        assert kill(left) == []
        wait_for(lambda: not marked(marker), 10, 0.1, "the orphan to be gone")
        assert [p.pid for p in marked(other)] == [bystander.pid]
    finally:
        kill([orphan, bystander])
