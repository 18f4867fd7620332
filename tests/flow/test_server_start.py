"""Starting a Prefect server: a server that cannot bind its port fails at once, naming its log, and leaves no
process behind (it used to be polled for 90 s)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from flows.services import start_server
from headstart.ground.errors import ToolError

pytestmark = pytest.mark.server  # starts a real `prefect server start` of its own


def test_a_server_whose_port_is_taken_fails_naming_its_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with socket.socket() as taken:  # listening, never answering: the health check alone would wait it out
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ToolError, match=rf"exited \(\d+\) before answering; its log: {log}"):
            start_server(port, tmp_path / "home", log)
    assert "already in use" in log.read_text()  # prefect checks the port first (uvicorn, when it races)
