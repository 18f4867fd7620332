"""Nothing is promoted unjudged: when the champion moves between a run's gate and its promote step (a manual
promote or rollback, another server on the same registry), the conflict is recorded and the challenger is judged
again against the new champion, then promoted only as the entry right after it — or not at all. The pipeline's
own steps, on real Fashion-MNIST and a local registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from headstart.ground.params import load_params
from headstart.ground.run_folder import RunFolder
from headstart.library.data.split import SplitResult
from headstart.library.registry.registry import Registry
from headstart.library.storage.backends import LocalStorage
from tasks.pipeline import get_step, steps_by_name
from tasks.step import StepContext

pytestmark = pytest.mark.slow  # trains a few small models

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"
BEFORE_PROMOTE = ("health", "train", "evaluate", "gate", "register", "report")


def test_a_champion_moved_before_promotion_is_judged_against_first(tiny_split, tmp_path: Path) -> None:
    _, split = tiny_split(8, 5, 6)  # 5 test images per class: per-class recall reported, not judged

    def run(name: str, *overrides: str) -> StepContext:
        sets = [
            "train.scenario=features",
            "train.num_workers=0",
            "model.input_size=32",
            f"train.feature_cache={tmp_path / 'fc'}",
            f"registry.uri=file://{tmp_path / 'registry'}",
            "registry.model_name=race",
            "gate.floors={}",  # the first (weak) model must become champion
            *overrides,
        ]
        ctx = StepContext(load_params(REPO_PARAMS, sets), RunFolder(tmp_path / name), steps_by_name())
        ctx.results["split"] = SplitResult(split, 0)
        for step in BEFORE_PROMOTE:
            ctx.results[step] = get_step(step).run(ctx)
        return ctx

    def promote(ctx: StepContext):
        ctx.results["promote"] = get_step("promote").run(ctx)
        return ctx.results["promote"], json.loads(ctx.run.promotion.read_text())

    registry = Registry(LocalStorage(tmp_path / "registry"), "race")
    weak = run("weak", "model.weights=none")  # random backbone: near chance
    promote(weak)
    assert registry.current_seq() == 1

    # 1. judged against the weak champion (#1); meanwhile it is rolled back to... itself, as #2: re-judged, PASS
    strong = run("strong")
    assert strong.results["gate"].passed and strong.results["gate"].champion_seq == 1
    registry.set_champion(weak.results["register"], "manual-promote", "by hand, meanwhile")
    record, outcome = promote(strong)
    assert (record.seq, record.judged_against_seq, record.version) == (3, 2, strong.results["register"])
    assert outcome["rejudged"] is True and outcome["judged_against_seq"] == 2

    # 2. judged against the weak champion (#4, a rollback); meanwhile the strong model is promoted by hand (#5):
    # re-judged against it, a tie, FAIL — the twin never displaces a champion it did not beat
    registry.rollback(to=weak.results["register"])
    twin = run("twin")  # the strong recipe again: the same model
    assert twin.results["gate"].passed and twin.results["gate"].champion_seq == 4
    registry.set_champion(strong.results["register"], "manual-promote", "by hand, meanwhile")
    record, outcome = promote(twin)
    rejudged = outcome.pop("rejudged_decision")
    assert record is None and outcome == {
        "version": twin.results["register"],
        "promoted": False,
        "alias_seq": None,
        "judged_against_seq": 5,
        "rejudged": True,
    }
    assert rejudged["verdict"] == "FAIL" and rejudged["champion"] == strong.results["register"]
    assert json.loads(twin.run.decision.read_text())["champion_seq"] == 4  # the gate's own record stays as it was

    history = registry.history()
    assert [r.seq for r in history] == [1, 2, 3, 4, 5] and registry.champion() == strong.results["register"]
    # every gate promotion came right after the entry it was judged against
    assert all(r.judged_against_seq == r.seq - 1 for r in history if r.action == "promote")
    lost = [c["attempt"]["version"] for c in registry.conflicts()]
    assert sorted(lost) == sorted([strong.results["register"], twin.results["register"]])
