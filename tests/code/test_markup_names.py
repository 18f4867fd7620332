"""User text printed by the CLI is text (issue 27, item 7): rich markup in a name (`[/x]`) raised MarkupError and
turned a clean error into a traceback, `[link=...]` became a link, `[bold]` vanished. Every console prints
strings as they are."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.corpus import png_bytes


def headstart(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["headstart", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_markup_in_names_is_printed_as_text_in_errors_and_tables(tmp_path: Path) -> None:
    shown = headstart("registry", "show", "[/oops]", "--set", f"registry.uri=file://{tmp_path / 'r'}", cwd=tmp_path)
    assert shown.returncode == 2 and "Traceback" not in shown.stderr, shown.stderr
    assert "'[/oops]' is not a version id" in " ".join(shown.stderr.split())

    src = tmp_path / "src" / "[" / "x]"
    src.mkdir(parents=True)
    (src / "0.png").write_bytes(png_bytes(1))
    (src.parent / "[bold red]oops.png").write_bytes(b"not an image")  # markup would drop the tag and style the rest
    checked = headstart("validate", str(tmp_path / "src"), "--out", str(tmp_path / "report"), cwd=tmp_path)
    assert "Traceback" not in checked.stderr and checked.returncode == 1, checked.stdout + checked.stderr
    printed = " ".join(checked.stdout.split())
    assert "[bold red]oops.png" in printed  # the name itself
