"""Progress of long steps: what training reports, and the rich bars the CLI draws from it on a terminal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from headstart.cli.progress import progress_bars
from headstart.ground.params import load_params
from headstart.ground.progress import set_reporter, tracked
from headstart.ground.run_folder import RunFolder
from headstart.library.training.scenarios import train

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


class Recorder:
    """Keeps every start/advance/finish it is told about."""

    def __init__(self) -> None:
        self.tasks: dict[int, dict] = {}

    def start(self, description: str, total: int, completed: int) -> int:
        self.tasks[len(self.tasks)] = {"description": description, "total": total, "done": completed}
        return len(self.tasks) - 1

    def advance(self, handle: int, steps: int) -> None:
        self.tasks[handle]["done"] += steps

    def finish(self, handle: int, transient: bool) -> None:
        self.tasks[handle]["finished"] = True


@pytest.mark.slow  # trains
def test_training_reports_epochs_and_batches(tiny_split) -> None:
    base, split = tiny_split(8, 2, 4)
    overrides = ["train.num_workers=0", "model.input_size=32", "train.batch_size=16", "train.scenario=finetune"]
    recorder = Recorder()
    previous = set_reporter(recorder)
    try:
        train(split, load_params(REPO_PARAMS, [*overrides, "train.epochs=2"]), RunFolder(base / "progress"), {})
    finally:
        set_reporter(previous)
    tasks = list(recorder.tasks.values())
    [epochs] = [t for t in tasks if t["description"] == "epochs"]
    assert epochs == {"description": "epochs", "total": 2, "done": 2, "finished": True}
    batches = [t for t in tasks if t["description"].endswith("batches")]
    assert [t["description"] for t in batches] == ["epoch 1 batches", "epoch 2 batches"]
    assert all(t["done"] == t["total"] > 0 and t.get("finished") for t in batches)


def test_cli_draws_bars_on_a_terminal_and_nothing_elsewhere() -> None:
    terminal = io.StringIO()
    console = Console(file=terminal, force_terminal=True, width=100)
    with progress_bars(console), tracked("epochs", 4, completed=1) as advance:
        advance()
        advance()
    drawn = terminal.getvalue()
    assert "epochs" in drawn and "3/4" in drawn

    plain = io.StringIO()
    with progress_bars(Console(file=plain, force_terminal=False)), tracked("epochs", 4) as advance:
        advance()
    assert plain.getvalue() == ""
