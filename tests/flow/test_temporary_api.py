"""The temporary Prefect server a command without PREFECT_API_URL starts: one, shared with the processes it starts,
outside the terminal's process group, and gone when the command exits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support.waiting import wait_for

pytestmark = pytest.mark.server  # starts a (temporary) Prefect server of its own

# A command's start as `headstart run` and `headstart sweep` do it, then a child Prefect client (a Dask worker's).
COMMAND = """
import json, os, subprocess, sys
import psutil
from flows.temporary_api import share_temporary_api

url = share_temporary_api()
[server] = psutil.Process().children()
client = "from prefect.client.orchestration import get_client; print(get_client(sync_client=True).api_url)"
child = subprocess.run([sys.executable, "-c", client], capture_output=True, text=True, check=True)
print(json.dumps({"url": url, "server": server.pid, "server_sid": os.getsid(server.pid), "sid": os.getsid(0),
                  "child_url": child.stdout.strip()}))
"""


def test_one_temporary_server_shared_with_children_in_its_own_session_and_stopped_at_exit(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_URL", "PREFECT_API_AUTH"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"  # 20 s is short on 2 busy cores
    done = subprocess.run([sys.executable, "-c", COMMAND], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    assert seen["url"].startswith("http://127.0.0.1:")
    assert seen["child_url"].rstrip("/") == seen["url"]  # the child started no server of its own
    assert seen["server_sid"] != seen["sid"]  # a Ctrl-C to the command's group does not reach it
    # the command stopped it on exit: the pid is gone or, reused meanwhile, another program
    wait_for(lambda: not _is_server(seen["server"]), 30, 0.2, "the temporary server to stop")


def _is_server(pid: int) -> bool:
    """Whether ``pid`` is still a running uvicorn."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and "uvicorn" in process.cmdline()
    except psutil.Error:
        return False
