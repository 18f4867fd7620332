"""The GPU worker image: no Docker engine here, so the Dockerfile is linted, checked against the project's pins
and layout, and its worker command run against the test server."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def torch_pin() -> str:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    [pin] = [d.split("==")[1] for d in dependencies if d.startswith("torch==")]
    return pin


def test_hadolint_passes() -> None:
    linted = subprocess.run(["hadolint", str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_base_image_carries_the_pinned_torch_with_cuda() -> None:
    [base] = re.findall(r"^ARG PYTORCH_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    repository, tag = base.split(":")
    assert repository == "pytorch/pytorch" and tag.startswith(f"{torch_pin()}-cuda"), base
    assert f"v == '{torch_pin()}'" in DOCKERFILE  # the build-time check agrees with the pin


def test_copied_sources_exist_and_cover_the_packages() -> None:
    copied = [line.split()[1:-1] for line in DOCKERFILE.splitlines() if line.startswith("COPY ")]
    sources = [source for sources in copied for source in sources]
    assert all((REPO / source).exists() for source in sources), sources
    assert {"headstart", "tasks", "flows", "pyproject.toml"} <= set(sources)


def test_worker_command_polls_the_gpu_deployments_pool(prefect_server) -> None:
    from flows.services import ensure_pools

    [cmd] = re.findall(r"^CMD (\[.*\])$", DOCKERFILE, re.MULTILINE)
    command = yaml.safe_load(cmd)  # JSON exec form
    pool = command[command.index("--pool") + 1]
    deployments = yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]
    assert pool in {d["work_pool"]["name"] for d in deployments if d["name"] == "gpu"}
    ensure_pools()
    once = subprocess.run([*command, "--run-once"], capture_output=True, text=True, timeout=120)
    assert once.returncode == 0, f"{shlex.join(command)}: {once.stdout}{once.stderr}"
    output = once.stdout + once.stderr
    assert "Worker 'ProcessWorker" in output and "started" in output, output


def test_the_worker_image_mounts_nothing_and_runs_the_documented_worker() -> None:
    """The image's CMD is `headstart worker prefect`, which runs flows.workers' command line; the environment table
    in docs/scale-out.md is flows.workers' own; a worker without the API's address refuses to start, naming it."""
    from flows.workers import WORKER_ENVIRONMENT, prefect_worker_command

    [cmd] = re.findall(r"^CMD (\[.*\])$", DOCKERFILE, re.MULTILINE)
    assert yaml.safe_load(cmd) == ["headstart", "worker", "prefect", "--pool", "gpu"]
    assert "VOLUME" not in DOCKERFILE and "/workspace" not in DOCKERFILE
    assert prefect_worker_command("gpu")[-6:] == ["worker", "start", "--pool", "gpu", "--type", "process"]
    page = (REPO / "docs/scale-out.md").read_text()
    section = page[page.index("## Workers that share nothing") : page.index("## What runs where")]
    documented = dict(re.findall(r"^\| `([A-Z_]+)` \| (.+) \|$", section, re.MULTILINE))
    assert documented == WORKER_ENVIRONMENT
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    refused = subprocess.run(
        ["headstart", "worker", "dask", "tcp://127.0.0.1:1"], capture_output=True, text=True, env=env, timeout=60
    )
    assert refused.returncode == 2 and "PREFECT_API_URL not set" in refused.stderr, refused.stderr
