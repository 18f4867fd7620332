"""`headstart report` and `headstart watch` (serve is tested with its servers, in tests/flow)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import at, invoke


def test_report_writes_the_overview_from_the_registry_alone(registry, tmp_path: Path, monkeypatch) -> None:
    opened, versions = registry
    monkeypatch.chdir(tmp_path)  # no workspace here: the registry is named by --set
    code, output = invoke("report", "--out", str(tmp_path / "report"), *at(opened))
    assert code == 0 and f"{len(versions)} versions" in output
    overview = json.loads((tmp_path / "report" / "overview.json").read_text())
    assert [v["version"] for v in overview["versions"]] == versions
    assert "<html" in (tmp_path / "report" / "index.html").read_text()


def test_watch_without_a_server_names_serve(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    code, output = invoke("watch")
    assert code == 2 and "`headstart serve`" in output
