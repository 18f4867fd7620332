"""Scrape cost of ``/metrics`` at 10 and 1,000 registered versions: the served endpoint (each source read in the
background, a scrape answered from memory) beside a collector that reads the registry on every scrape (what the
endpoint did before), alternating, medians of each. Printed, never asserted.

    .venv/bin/python benchmarks/scrape.py [--sizes 10 1000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from flows.ops_metrics import HeadstartCollector, start_metrics_server
from headstart.ground.params import Params
from headstart.library.registry.registry import Registry
from headstart.library.storage.backends import LocalStorage

FILES = {"model.safetensors": b"weights-bytes", "config.json": b'{"classes": ["a"]}', "decision.json": b"{}"}


def registry_of(folder: Path, count: int) -> Params:
    """A file registry with ``count`` versions and a champion; its params."""
    registry = Registry(LocalStorage(folder), "demo")
    for n in range(count):
        version = registry.register(FILES, {"metrics": {"accuracy": 0.5 + n / (4 * count)}, "decision": "PASS"})
    registry.set_champion(version, "promote", "newest")
    return Params.model_validate({"registry": {"uri": str(folder), "model_name": "demo"}})


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            params = registry_of(Path(tmp) / f"registry-{size}", size)
            fresh = CollectorRegistry(auto_describe=False)
            fresh.register(HeadstartCollector(params))
            port = free_port()
            endpoint = start_metrics_server(params, port, refresh_seconds=5.0)
            url = f"http://127.0.0.1:{port}/metrics"
            served, reading = [], []
            try:
                for _ in range(args.rounds):  # alternated: this machine's speed drifts between minutes
                    start = time.perf_counter()
                    with urllib.request.urlopen(url, timeout=60) as answer:
                        answer.read()
                    served.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    generate_latest(fresh)
                    reading.append(time.perf_counter() - start)
            finally:
                endpoint.shutdown()
            a, b = statistics.median(served) * 1000, statistics.median(reading) * 1000
            print(f"{size:5d} versions: served endpoint {a:7.1f} ms (HTTP included) | reading on every scrape "
                  f"{b:8.1f} ms (in process) | ratio {b / a:6.1f}x", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
