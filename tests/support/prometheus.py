"""A real Prometheus server (Debian's ``prometheus`` package) on 127.0.0.1 scraping given targets, and
its HTTP query API. CI installs it and sets ``HEADSTART_REQUIRE_PROMETHEUS``: there a missing binary fails."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.waiting import wait_for


class Prometheus:
    """A started server: :meth:`query` runs an instant PromQL query."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expression: str) -> list[dict]:
        """The query's result vector: [{"metric": labels, "value": [time, "value"]}, ...]."""
        address = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(address, timeout=10) as answer:
            body = json.loads(answer.read())
        assert body["status"] == "success", body
        return body["data"]["result"]


def prometheus_binary() -> str | None:
    """The prometheus binary, None where it is absent and not required (then the caller leaves it out)."""
    found = shutil.which("prometheus")
    if found is None and os.environ.get("HEADSTART_REQUIRE_PROMETHEUS"):
        pytest.fail("prometheus not found (Debian's prometheus package) and HEADSTART_REQUIRE_PROMETHEUS is set")
    return found


@contextlib.contextmanager
def scraping(binary: str, targets: list[str], port: int, folder: Path) -> Iterator[Prometheus]:
    """Prometheus on 127.0.0.1:``port`` scraping ``targets`` (host:port) every 5 s (each scrape of headstart's
    endpoint asks the Prefect API 14 counts); stopped on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "5s", "scrape_timeout": "5s", "evaluation_interval": "5s"},
        "scrape_configs": [{"job_name": "headstart", "static_configs": [{"targets": targets}]}],
    }))  # fmt: skip
    log = (folder / "prometheus.log").open("w")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        wait_for(lambda: _ready(server, process), 30, 0.2, "Prometheus to answer")
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _ready(server: Prometheus, process: subprocess.Popen) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"prometheus exited with {process.returncode}")
    try:
        with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False
