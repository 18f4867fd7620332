"""The workspace's Prefect API secret: generated once (0600), refused when empty or readable by others, and sent
by headstart commands only to an API on this machine."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flows.services import AUTH_ENV, AUTH_FILE, api_auth_string, workspace_auth_string
from headstart.cli.main import _use_workspace_api_auth
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
    _use_workspace_api_auth()
    assert os.environ.get(AUTH_ENV) == (auth if sent else None)
