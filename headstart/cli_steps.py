"""``headstart step``: single pipeline steps, as dvc.yaml's stages call them (each reads params.yaml)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from headstart.cli_output import print_decision, print_report
from headstart.cli_progress import progress_bars

step_app = typer.Typer(help="Single pipeline steps, as dvc.yaml's stages call them.", no_args_is_help=True)
console = Console()


@step_app.callback()
def _log_progress() -> None:
    """Steps run outside Prefect (dvc repro): print the steps' progress (epochs, resume, freezing) to stderr."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)


ParamsOpt = Annotated[Path, typer.Option("--params", help="params.yaml to read.")]


@step_app.command("validate")
def step_validate(params: ParamsOpt = Path("params.yaml"), out: Path = Path("runs/dvc")) -> None:
    """Validate data.dir (and data.test_dir) into OUT/validate[-test]/; exit 1 on failure."""
    from headstart.config import load_params
    from tasks.validate import validate_dataset

    settings = load_params(params)
    targets = [(settings.data.dir, "validate"), (settings.data.test_dir, "validate-test")]
    ok = True
    for directory, sub in targets:
        if directory:
            report = validate_dataset(Path(directory), settings.validate_, out / sub)
            print_report(report, out / sub)
            ok &= report.success
    raise typer.Exit(0 if ok else 1)


@step_app.command("split")
def step_split(params: ParamsOpt = Path("params.yaml"), out: Path = Path("runs/dvc")) -> None:
    """Split from OUT/validate[-test]/manifest.csv into OUT/split.csv."""
    from headstart.config import load_params
    from tasks.split import split_dataset

    s = load_params(params)
    test_dir = Path(s.data.test_dir) if s.data.test_dir else None
    result = split_dataset(
        out / "validate" / "manifest.csv",
        Path(s.data.dir),
        s.split,
        out / "split.csv",
        out / "validate-test" / "manifest.csv" if test_dir else None,
        test_dir,
    )
    console.print(f"{out / 'split.csv'}: {result.counts()}")


@step_app.command("train")
def step_train(params: ParamsOpt = Path("params.yaml"), out: Path = Path("runs/dvc")) -> None:
    """Fine-tune from OUT/split.csv into OUT/model/ (+ OUT/curves.csv, OUT/checkpoints/)."""
    from headstart import lineage
    from headstart.config import load_params
    from tasks.train import train_model

    s = load_params(params)
    record = lineage.collect(Path.cwd(), s, None)
    with progress_bars():
        result = train_model(out / "split.csv", s, out, record)
    console.print(f"{result.model_dir}: {result.history[-1]}")


@step_app.command("evaluate")
def step_evaluate(params: ParamsOpt = Path("params.yaml"), out: Path = Path("runs/dvc")) -> None:
    """Score OUT/model/ on the test split into OUT/metrics.json and OUT/confusion.csv."""
    from headstart.config import load_params
    from tasks.evaluate import evaluate_model

    s = load_params(params)
    with progress_bars():
        metrics = evaluate_model(out / "model", out / "split.csv", out, s.evaluate.batch_size)
    console.print(f"accuracy {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}")


@step_app.command("gate")
def step_gate(
    params: ParamsOpt = Path("params.yaml"),
    out: Path = Path("runs/dvc"),
    allow_class_change: Annotated[bool, typer.Option(help="Allow a different class set.")] = False,
) -> None:
    """Score the champion on OUT/split.csv and decide; writes OUT/decision.json and OUT/model_card.md."""
    from headstart.config import load_params
    from tasks.promote import judge, open_registry

    s = load_params(params)
    decision = judge(
        out, out / "split.csv", s.gate, open_registry(s.registry), s.evaluate.batch_size, allow_class_change
    )
    print_decision(decision.to_dict())


@step_app.command("promote")
def step_promote(params: ParamsOpt = Path("params.yaml"), out: Path = Path("runs/dvc")) -> None:
    """Register OUT as a new version; move the champion alias if its decision passed. Writes OUT/registered.json."""
    from headstart.config import load_params
    from tasks.gate import Decision
    from tasks.promote import DECISION_FILE, open_registry, promote_if_passed, register_run

    registry = open_registry(load_params(params).registry)
    decision = Decision.from_dict(json.loads((out / DECISION_FILE).read_text()))
    version = register_run(registry, out)
    record = promote_if_passed(registry, version, decision)
    (out / "registered.json").write_text(json.dumps({"version": version, "promoted": record is not None}))
    console.print(f"registered {version}; " + (f"champion #{record.seq}" if record else "not promoted"))
