"""`headstart serve` starting its own Prefect server: the API asks for an auth string generated once into the
workspace (0600); serve's deploy and workers, and headstart commands run in the workspace, send it.

This is the one test that starts a second Prefect server: what it checks is the server serve starts."""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.seaweedfs import free_ports
from tests.support.waiting import wait_for

HEADSTART = str(Path(sys.executable).parent / "headstart")


def api_call(api: str, path: str, auth: str | None = None, body: dict | None = None) -> tuple[int, object]:
    """POST ``body`` to the API, with Basic ``auth`` when given; returns the status and the JSON answer."""
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    request = urllib.request.Request(f"{api}{path}", json.dumps(body or {}).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as refused:
        return refused.code, None


@pytest.mark.server  # `headstart serve` starts a Prefect server of its own
def test_the_server_serve_starts_asks_for_the_workspace_auth_string(tmp_path: Path, fashion_idx_dir) -> None:
    from headstart.library.data.workspace import init_workspace

    workspace = init_workspace(tmp_path / "ws")
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")}
    env["HEADSTART_DVC_REMOTE"] = str(tmp_path / "remote")
    [port] = free_ports(1)
    api = f"http://127.0.0.1:{port}/api"
    serve = subprocess.Popen(
        [HEADSTART, "serve", "--port", str(port)],
        cwd=workspace,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        banner = serve.stdout.readline()
        assert f"API: {api}" in banner, banner + (serve.stdout.read() if serve.poll() is not None else "")
        auth_file = workspace / ".prefect" / "api-auth"
        assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
        auth = auth_file.read_text().strip()
        assert auth not in banner + serve.stdout.readline()  # where it is is printed, never the string itself

        assert api_call(api, "/deployments/filter")[0] == 401
        assert api_call(api, "/deployments/filter", "headstart:not-the-string")[0] == 401
        status, deployments = api_call(api, "/deployments/filter", auth)
        assert status == 200 and {d["name"] for d in deployments} == {"nightly", "on-data-change", "gpu"}
        workers = wait_for(lambda: api_call(api, "/work_pools/local/workers/filter", auth)[1], 60, 1.0, "a worker")
        assert workers, "serve's worker never reached the API"

        # a headstart command run in the workspace sends the string without being told: its event arrives
        done = subprocess.run(
            [HEADSTART, "data", "import", "fashion-mnist", "--per-class", "2"], cwd=workspace, env=env, text=True
        )
        assert done.returncode == 0
        watched = subprocess.run(
            [HEADSTART, "watch", "--json"],
            cwd=workspace,
            env={**env, "PREFECT_API_URL": api},
            capture_output=True,
            text=True,
        )
        assert watched.returncode == 0, watched.stdout + watched.stderr
        [change] = [json.loads(line) for line in watched.stdout.splitlines()]
        assert change["emitted"] is True
        query = {"filter": {"id": {"id": [change["event_id"]]}}, "limit": 5}
        arrived = wait_for(lambda: api_call(api, "/events/filter", auth, query)[1]["events"], 30, 0.5, "the event")
        assert [e["id"] for e in arrived] == [change["event_id"]]
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGTERM)
            try:
                serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(serve.pid, signal.SIGKILL)
