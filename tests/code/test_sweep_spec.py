"""SWEEP.yaml: grid and trials expand to the right points, and what a trial may not change is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.sweep import task_runner, worker_threads
from headstart.ground.errors import ConfigError
from tasks.sweep import best_trial, load_sweep, trial_params

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def sweep_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_grid_is_a_product_crossed_with_each_listed_trial(tmp_path: Path) -> None:
    spec = """
grid: {train.lr: [0.001, 0.003], model.backbone: [tf_efficientnet_lite0, mobilenetv2_100]}
trials: [{train.scenario: finetune}, {train.scenario: hybrid, train.epochs: 2}]
"""
    trials = load_sweep(sweep_file(tmp_path, spec))
    assert len(trials) == 8 and [t.name for t in trials][:2] == ["trial-00", "trial-01"]
    assert trials[0].overrides == {
        "train.scenario": "finetune",
        "train.lr": 0.001,
        "model.backbone": "tf_efficientnet_lite0",
    }
    assert trials[7].overrides == {
        "train.scenario": "hybrid", "train.epochs": 2, "train.lr": 0.003, "model.backbone": "mobilenetv2_100"
    }  # fmt: skip
    assert len({tuple(sorted(t.overrides.items())) for t in trials}) == 8
    params = trial_params(REPO_PARAMS, ["train.seed=3"], trials[7])
    assert (params.train.scenario, params.train.epochs, params.train.lr, params.train.seed) == ("hybrid", 2, 0.003, 3)
    assert params.model.backbone == "mobilenetv2_100"
    assert params.train.features_fit == "train"  # trials are compared on val: never fitted on it (run defaults differ)
    only_grid = load_sweep(sweep_file(tmp_path, "grid: {train.classifier_c: [0.1, 1, 10]}"))
    assert [t.overrides["train.classifier_c"] for t in only_grid] == [0.1, 1, 10]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("grid: {split.seed: [1, 2]}", "'split.seed'"),  # every trial must be judged on the same validation rows
        ("trials: [{health.drift: false}]", "'health.drift'"),
        ("grid: {train.lr: []}", "non-empty list"),
        ("trials: {train.lr: 0.1}", "list of mappings"),
        ("sweep: {train.lr: [0.1]}", "`grid` and/or `trials`"),
        ("grid: [", "not valid YAML"),
    ],
)
def test_a_bad_sweep_file_is_named_with_its_problem(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=r"sweep\.yaml: .*") as caught:
        load_sweep(sweep_file(tmp_path, text))
    assert named in str(caught.value)


def test_a_trial_with_an_invalid_value_is_named_before_anything_runs(tmp_path: Path) -> None:
    [trial] = load_sweep(sweep_file(tmp_path, "trials: [{train.epochs: 0}]"))
    with pytest.raises(ConfigError, match=r"(?s)trial-00 \{'train.epochs': 0\}: .*train.epochs"):
        trial_params(REPO_PARAMS, [], trial)


def test_the_best_trial_follows_the_primary_metric_and_its_direction() -> None:
    from headstart.ground.params import load_params

    rows = [
        {"trial": "trial-00", "val_accuracy": 0.8, "val_macro_f1": 0.7},
        {"trial": "trial-01", "val_accuracy": 0.9, "val_macro_f1": 0.6},
        {"trial": "trial-02", "val_accuracy": 0.9, "val_macro_f1": 0.8},
    ]
    assert best_trial(rows, load_params(REPO_PARAMS))["trial"] == "trial-01"  # accuracy; the first on a tie
    by_f1 = load_params(REPO_PARAMS, ["gate.primary_metric=macro_f1"])
    assert best_trial(rows, by_f1)["trial"] == "trial-02"
    lowest = load_params(REPO_PARAMS, ["gate.primary_metric=macro_f1", "gate.direction=minimize"])
    assert best_trial(rows, lowest)["trial"] == "trial-01"


@pytest.mark.parametrize("cluster", ["local", "local:0", "local:x", "http://host:8786", "dask"])
def test_a_bad_cluster_is_refused(cluster: str) -> None:
    with pytest.raises(ConfigError, match=r"local:N .* or tcp://HOST:PORT"):
        task_runner(cluster)


def test_cluster_forms() -> None:
    local = task_runner("local:3")
    assert local.cluster_kwargs["n_workers"] == 3 and local.cluster_kwargs["host"] == "127.0.0.1"
    assert task_runner("tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    import os

    cores = os.cpu_count() or 1
    assert worker_threads("local:1") == cores and worker_threads(f"local:{cores * 2}") == 1  # never zero
    assert worker_threads("tcp://h:1") is None  # a remote worker keeps its own default


def test_a_sweep_spec_is_bounded_before_anything_is_expanded(tmp_path: Path) -> None:
    """Issue 27, item 8: 576 bytes of nested aliases spent 73 s and then MemoryError; an 8 × 30 grid (6.6e11
    trials) ran out of memory inside load_sweep. Both are refused by counting, not by expanding."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(12)
    ) + "grid: {train.lr: *m}\n"  # fmt: skip
    with pytest.raises(ConfigError, match="YAML aliases"):
        load_sweep(sweep_file(tmp_path, bomb))
    huge_grid = "grid:\n" + "".join(f"  train.k{i}: [{', '.join(str(v) for v in range(30))}]\n" for i in range(8))
    with pytest.raises(ConfigError, match="656100000000 trials; a sweep runs at most 256"):
        load_sweep(sweep_file(tmp_path, huge_grid))
    with pytest.raises(ConfigError, match="12 trials; a sweep runs at most 10"):
        load_sweep(sweep_file(tmp_path, "grid: {train.lr: [1, 2, 3, 4], train.epochs: [1, 2, 3]}"), max_trials=10)
    with pytest.raises(ConfigError, match="a value is over 2000 characters"):
        load_sweep(sweep_file(tmp_path, f"trials: [{{model.backbone: {'x' * 3000}}}]"))
    with pytest.raises(ConfigError, match="a sweep file holds at most 64000"):
        load_sweep(sweep_file(tmp_path, "# " + "x" * 70_000 + "\ngrid: {train.lr: [1]}"))


def test_a_trial_folder_of_other_overrides_is_never_reused(tmp_path: Path) -> None:
    """Issue 27, item 11: a sweep rerun in the same --run-dir reused `trial-NN` by number without checking that
    it was trained with the same overrides (the sweep file changed between the runs)."""
    import json

    from headstart.ground.params import Params
    from tasks.sweep import Trial, run_trial

    folder = tmp_path / "sweep" / "trial-00"
    folder.mkdir(parents=True)
    earlier = {"trial": "trial-00", "overrides": {"train.lr": 0.1}, "attempts": [], "result": {"val_accuracy": 0.9}}
    (folder / "trial.json").write_text(json.dumps(earlier))
    with pytest.raises(ConfigError, match="trial-00 in this folder was trained with"):
        run_trial(Params(), tmp_path / "sweep", Trial(0, {"train.lr": 0.2}), None, None)
