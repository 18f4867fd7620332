"""The quick demo's trims: written into the workspace's params.yaml with its comments kept, valid params, and
committed, so the deployments' runs train with exactly what the demo said on screen."""

from __future__ import annotations

import subprocess
from pathlib import Path

from flows.demo import FULL, QUICK, apply_trims
from headstart.ground.params import Params, load_params
from headstart.library.data.workspace import ensure_identity, git

REPO = Path(__file__).resolve().parents[2]


def test_the_quick_trims_are_valid_params_written_with_the_comments_and_committed(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    git(workspace, "init", "-q")
    ensure_identity(workspace)
    shipped = (REPO / "params.yaml").read_text()
    (workspace / "params.yaml").write_text(shipped)
    apply_trims(workspace, QUICK.trims)
    trimmed = load_params(workspace / "params.yaml")
    for dotted, value in QUICK.trims.items():
        section, key = dotted.split(".")
        assert getattr(getattr(trimmed, section), key) == value
    untouched = load_params(REPO / "params.yaml")
    assert trimmed.gate == untouched.gate and trimmed.augment == untouched.augment  # nothing else moved
    text = (workspace / "params.yaml").read_text()
    assert text.count("#") == shipped.count("#")  # every comment kept
    log = subprocess.run(["git", "log", "--format=%s", "--", "params.yaml"], cwd=workspace, capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert (
        "train.epochs=4" in log
        and not subprocess.run(
            ["git", "status", "--porcelain"], cwd=workspace, capture_output=True, text=True, check=True
        ).stdout.strip()
    )


def test_the_full_demo_trains_with_the_shipped_params_and_the_quick_one_says_what_it_trims() -> None:
    assert FULL.trims == {} and "params.yaml as shipped" in FULL.describe()
    described = QUICK.describe()
    assert all(f"{key}={value}" in described for key, value in QUICK.trims.items())
    assert QUICK.per_class < QUICK.v2_per_class  # a second, larger data version: the gate has a gain to judge
    assert Params().train.auto_features_below > QUICK.per_class * 0.7  # v1 small enough for the features scenario
