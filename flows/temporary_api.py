"""One temporary Prefect server per command, shared with the processes it starts and stopped by it alone.

Without ``PREFECT_API_URL`` every process that reports runs starts a temporary server of its own (Prefect's
``SubprocessASGIServer``, stopped at that process's exit): each Dask worker of a sweep would too, and a worker
ended by a signal leaves its server behind. Started here instead, before any worker, its address is exported to
them. It runs in its own session: Ctrl-C at the terminal reaches the command, which reports the run Crashed to the
still running server and then stops it, instead of retrying against a server the same Ctrl-C stopped.
"""

from __future__ import annotations

import os
import socket
import subprocess
from typing import Any

import prefect.server.api.server as prefect_server
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED


class _OwnSession:
    """The subprocess module as Prefect's server module sees it while starting the server: a new session each."""

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    @staticmethod
    def Popen(*args: Any, **kwargs: Any) -> subprocess.Popen[Any]:  # stands in for subprocess.Popen
        return subprocess.Popen(*args, **kwargs, start_new_session=True)


class _OwnSessionServer(SubprocessASGIServer):
    """Prefect's temporary server, started outside the terminal's process group."""

    def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
        prefect_server.subprocess = _OwnSession()  # type: ignore[assignment]  # only Prefect's server module
        try:
            return super()._run_uvicorn_command()
        finally:
            prefect_server.subprocess = subprocess


def _unused_port() -> int:
    """A port the kernel has just handed out. Prefect picks a random one of 8000-8999 and checks it is free: two
    commands starting at once (a test suite, cron) can pick the same one, and the slower server then fails to bind
    while its command talks to the other's server, until that one stops (seen: 'address already in use')."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def share_temporary_api() -> str | None:
    """Start this process's temporary server now, unless an API is configured (or temporary servers are off), and
    export its address to every process started from here on; returns that address (None: nothing started)."""
    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    # registered under the key Prefect's own clients look up, so they use this instance and start no other
    server = _OwnSessionServer(port=_unused_port())
    SubprocessASGIServer._instances[None] = server  # the key a client without a port asks for
    server.start()  # Prefect registers its stop with atexit
    os.environ["PREFECT_API_URL"] = server.api_url
    return server.api_url
