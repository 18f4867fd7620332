"""The README's "your own images" steps, exactly as a user types them, on a folder this test makes: `headstart init
--data`, `headstart run`, `headstart serve` (which starts a Prefect server of its own, asking for the auth string it
generates into the workspace), a second import and `headstart watch` in another shell, with no PREFECT_API_URL and no
hand edit; the data change triggers a retrain that registers a model of the same name on the new data.

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

import numpy as np
import pytest
import yaml
from PIL import Image

from headstart.library.data.versioning import read_dvc_md5
from tests.support.seaweedfs import free_ports
from tests.support.waiting import wait_for

HEADSTART = str(Path(sys.executable).parent / "headstart")
COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (50, 60, 210)}


def image_folder(root: Path, per_class: int, first: int = 0) -> Path:
    """A class-per-folder tree of 24 px noisy images tinted by class (any backbone tells them apart)."""
    rng = np.random.default_rng(first)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(first, first + per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 40, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}-{i:03d}.png")
    return root


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


def manifests(registry: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(registry.glob("versions/*/MANIFEST.json"))]


@pytest.mark.server  # `headstart serve` starts a Prefect server of its own
@pytest.mark.slow
def test_your_own_images_the_readme_way_retrain_on_a_data_change(tmp_path: Path) -> None:
    # a user's shell: no Prefect API configured; the DVC remote is the default one (HOME-independent here)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")}
    env["HEADSTART_DVC_REMOTE"] = str(tmp_path / "remote")
    parts = image_folder(tmp_path / "images" / "parts", per_class=14)

    def headstart(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run([HEADSTART, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)

    # 1. headstart init my-workspace --data FOLDER
    init = headstart("init", "my-workspace", "--data", str(parts), cwd=tmp_path)
    assert init.returncode == 0, init.stdout + init.stderr
    workspace = tmp_path / "my-workspace"
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    assert params["data"] == {"dir": "data/parts", "test_dir": None}  # no --test-data: a split by hash
    assert params["registry"]["model_name"] == "parts"
    assert "# class-per-folder images" in (workspace / "params.yaml").read_text()  # its comments kept
    status = subprocess.run(["git", "status", "--porcelain"], cwd=workspace, capture_output=True, text=True)
    assert status.stdout == ""  # data version, params and pipeline all committed
    assert sorted(p.name for p in (workspace / "data" / "parts").iterdir()) == sorted(COLOURS)

    # 2. cd my-workspace && headstart run
    run = headstart("run", cwd=workspace)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    registry = workspace / "registry" / "parts"
    [first] = manifests(registry)
    assert first["data_md5"] == read_dvc_md5(workspace / "data" / "parts.dvc") and first["decision"] == "PASS"

    # 3. headstart serve &, then a new data version and headstart watch in another shell (no export)
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
        workers = wait_for(lambda: api_call(api, "/work_pools/local/workers/filter", auth)[1], 90, 1.0, "a worker")
        assert workers, "serve's worker never reached the API"
        wait_for(lambda: (workspace / ".prefect" / "api-url").is_file(), 30, 0.5, "serve's recorded API URL")

        more = image_folder(tmp_path / "images-v2" / "parts", per_class=4, first=100)
        for cls in COLOURS:  # the new version: the old images and some new ones
            for old in (parts / cls).iterdir():
                (more / cls / old.name).write_bytes(old.read_bytes())
        imported = headstart("data", "import", "folder", str(more), "--name", "parts", "--replace", cwd=workspace)
        assert imported.returncode == 0, imported.stdout + imported.stderr
        new_md5 = read_dvc_md5(workspace / "data" / "parts.dvc")
        watched = headstart("watch", "--json", cwd=workspace)
        assert watched.returncode == 0, watched.stdout + watched.stderr
        [change] = [json.loads(line) for line in watched.stdout.splitlines()]
        assert (change["dataset"], change["new_md5"], change["emitted"]) == ("parts", new_md5, True)

        second = wait_for(lambda: [m for m in manifests(registry) if m["data_md5"] == new_md5], 480, 2.0, "the retrain")
        [triggered] = second
        assert triggered["dataset"] == "parts"

        def summary_of_the_triggered_run() -> list[dict]:  # written after registration, by the report step
            summaries = [json.loads(p.read_text()) for p in workspace.glob("runs/*/summary.json")]
            return [s for s in summaries if s["version"] == triggered["version"]]

        [by_trigger] = wait_for(summary_of_the_triggered_run, 120, 1.0, "the triggered run's summary")
        assert by_trigger["trigger"] == {"dataset": "parts", "old_md5": first["data_md5"], "new_md5": new_md5}
        assert not (tmp_path / "registry").exists() and [p.name for p in (workspace / "registry").iterdir()] == [
            "parts"
        ]
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGTERM)
            try:
                serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(serve.pid, signal.SIGKILL)
    assert not (workspace / ".prefect" / "api-url").exists()  # serve stopped: nothing points at its API
