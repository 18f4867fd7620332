"""SIGTERM stops a command as Ctrl-C does: cleanup and atexit hooks run (where the temporary Prefect server is
stopped), and a second SIGTERM does not break off that cleanup."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import atexit, os, signal
from headstart.cli.interrupts import sigterm_as_ctrl_c

sigterm_as_ctrl_c()
atexit.register(print, "atexit ran", flush=True)
try:
    os.kill(os.getpid(), signal.SIGTERM)
    signal.pause()  # never reached: the handler raises as soon as the signal is in
except KeyboardInterrupt as stopped:
    print(f"cleaning up after {stopped}", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)  # another, e.g. from an impatient supervisor
    print("cleaned up", flush=True)
    raise
"""


def test_sigterm_unwinds_like_ctrl_c_and_a_second_one_is_ignored() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["cleaning up after stopped by signal SIGTERM", "cleaned up", "atexit ran"]
    assert done.returncode != 0, done.stderr  # it still ends as interrupted
