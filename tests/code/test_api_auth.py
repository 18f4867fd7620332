"""The workspace's Prefect API secret: generated once (0600), refused when empty or readable by others, and sent
by headstart commands only to an API on this machine."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flows.services import API_URL_FILE, AUTH_ENV, AUTH_FILE, Services, api_auth_string, workspace_auth_string
from headstart.cli.main import _use_workspace_api
from headstart.ground.errors import ToolError


def test_the_auth_file_is_made_once_and_refused_when_empty_or_readable_by_others(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(AUTH_ENV, raising=False)
    auth = api_auth_string(tmp_path)
    path = tmp_path / AUTH_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(auth) > 40
    assert api_auth_string(tmp_path) == auth == workspace_auth_string(tmp_path)  # generated once
    path.chmod(0o644)
    for read in (api_auth_string, workspace_auth_string):
        with pytest.raises(ToolError, match="readable by others"):
            read(tmp_path)
    path.chmod(0o600)
    path.write_text("\n")  # e.g. killed between create and write: an API without auth must not follow
    for read in (api_auth_string, workspace_auth_string):
        with pytest.raises(ToolError, match="empty"):
            read(tmp_path)


@pytest.mark.parametrize(
    ("api_url", "sent"),
    [("http://127.0.0.1:4200/api", True), ("http://localhost:4200/api", True), ("https://prefect.example/api", False)],
)
def test_headstart_sends_the_workspace_secret_only_to_an_api_on_this_machine(
    tmp_path: Path, monkeypatch, api_url: str, sent: bool
) -> None:
    monkeypatch.delenv(AUTH_ENV, raising=False)
    auth = api_auth_string(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PREFECT_API_URL", api_url)
    _use_workspace_api()
    assert os.environ.get(AUTH_ENV) == (auth if sent else None)


@contextmanager
def healthy_api() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 answering /api/health as Prefect's does."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api"
    finally:
        server.shutdown()
        server.server_close()


def test_commands_in_a_served_workspace_reach_its_api_until_serve_stops(tmp_path: Path, monkeypatch) -> None:
    """`headstart watch` in another shell finds the API the workspace's serve started; an API set in the
    environment wins; once serve stops, nothing points at the API that went away."""
    monkeypatch.delenv(AUTH_ENV, raising=False)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    auth = api_auth_string(tmp_path)
    with healthy_api() as api_url:
        served = Services(api_url, auth)
        served.record_api_url(tmp_path)
        _use_workspace_api()
        assert (os.environ["PREFECT_API_URL"], os.environ[AUTH_ENV]) == (served.api_url, auth)
    monkeypatch.delenv("PREFECT_API_URL")
    monkeypatch.delenv(AUTH_ENV)
    _use_workspace_api()  # the same file, its server gone (a serve killed with -9): not followed
    assert "PREFECT_API_URL" not in os.environ

    monkeypatch.setenv("PREFECT_API_URL", "https://prefect.example/api")  # the environment's API is used as is
    _use_workspace_api()
    assert os.environ["PREFECT_API_URL"] == "https://prefect.example/api" and AUTH_ENV not in os.environ

    served.stop()
    assert not (tmp_path / API_URL_FILE).exists()
    monkeypatch.delenv("PREFECT_API_URL")
    _use_workspace_api()
    assert "PREFECT_API_URL" not in os.environ


def test_a_recorded_api_elsewhere_is_not_followed(tmp_path: Path, monkeypatch) -> None:
    """A planted api-url naming another machine would send the workspace's runs and events there: ignored."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    Services("https://prefect.example/api").record_api_url(tmp_path)
    _use_workspace_api()
    assert "PREFECT_API_URL" not in os.environ


def test_a_stopping_serve_leaves_a_newer_serves_url_alone(tmp_path: Path) -> None:
    first, second = Services("http://127.0.0.1:1111/api"), Services("http://127.0.0.1:2222/api")
    first.record_api_url(tmp_path)
    second.record_api_url(tmp_path)
    first.stop()
    assert (tmp_path / API_URL_FILE).read_text().strip() == second.api_url
