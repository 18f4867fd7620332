"""`headstart registry ...`: each command reads or moves the registry through the library, as the exit status and
--json say."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import at, invoke


def test_ls_lists_verified_versions_as_json(registry) -> None:
    opened, (passed, failed) = registry
    code, output = invoke("registry", "ls", "--json", *at(opened))
    assert code == 0
    rows = json.loads(output)
    assert [(r["id"], r["decision"], r["champion"]) for r in rows] == [(passed, "PASS", False), (failed, "FAIL", False)]
    assert rows[0]["metrics"]["accuracy"] == 0.8 and len(rows[0]["manifest_sha256"]) == 64


def test_promote_refuses_a_failed_version_unless_forced_and_rollback_restores(registry) -> None:
    opened, (passed, failed) = registry
    assert invoke("registry", "show", "champion", *at(opened))[0] == 2  # no champion yet: refused, named
    assert invoke("registry", "promote", passed, *at(opened))[0] == 0
    code, output = invoke("registry", "promote", failed, *at(opened))
    assert code == 2 and "--force" in output and opened.champion() == passed  # nothing moved
    assert invoke("registry", "promote", failed, "--force", *at(opened))[0] == 0
    assert opened.champion() == failed
    code, output = invoke("registry", "rollback", *at(opened))
    assert code == 0 and opened.champion() == passed
    shown = json.loads(invoke("registry", "show", "champion", "--json", *at(opened))[1])
    assert [h["version"] for h in shown["history"]] == [passed, failed, passed]
    assert shown["manifest"]["version"] == passed and shown["decision"]["verdict"] == "PASS"


def test_pull_writes_the_verified_files_and_never_over_another_folder(registry, tmp_path: Path) -> None:
    opened, (passed, _) = registry
    code, _ = invoke("registry", "pull", passed, str(tmp_path / "pulled"), *at(opened))
    assert code == 0 and (tmp_path / "pulled" / "model.safetensors").read_bytes() == b"one"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    code, output = invoke("registry", "pull", passed, str(tmp_path / "mine"), *at(opened))
    assert code == 2 and "nothing was written" in output
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_gc_dry_run_removes_nothing_and_says_what_it_would(registry) -> None:
    opened, versions = registry
    code, output = invoke("registry", "gc", "--dry-run", "--json", "--set", "registry.keep_last=1", *at(opened))
    assert code == 0
    plan = json.loads(output)
    assert plan["dry_run"] is True and list(plan["versions"]) == [versions[0]]
    assert [m["version"] for m in opened.versions()] == versions  # still there


def test_an_unknown_version_is_refused_with_the_command_that_lists_them(registry) -> None:
    opened, _ = registry
    code, output = invoke("registry", "show", "20990101T000000Z-nope", *at(opened))
    assert code == 2 and "`headstart registry ls`" in output
