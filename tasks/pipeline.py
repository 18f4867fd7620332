"""The pipeline table: the one ordered definition of the retrain steps.

It drives the Prefect flow (``flows/retrain.py``), ``headstart step NAME`` and ``dvc.yaml`` (rendered by
``tasks/dvc_stages.py``; a test keeps the repository's dvc.yaml equal to it). The order is the run lifecycle:
nothing after ``promote`` can fail the run.
"""

from __future__ import annotations

from tasks import evaluate, gate, health, promote, publish, register, report, split, train, validate
from tasks.step import Step, StepContext

PIPELINE: tuple[Step, ...] = (
    validate.STEP,
    split.STEP,  # near-duplicate leakage handled here (health.leakage)
    health.STEP,  # label issues and drift; may stop the run before training
    train.STEP,
    evaluate.STEP,
    gate.STEP,  # the champion pulled, verified and re-scored on the same split; a pure decision
    register.STEP,  # every challenger, PASS or FAIL
    report.STEP,  # summary, model card and dashboards before the champion moves
    promote.STEP,  # the alias moves only now, and only on PASS
    publish.STEP,  # best-effort: Prefect artifacts
)


def steps_by_name() -> dict[str, Step]:
    """The table keyed by step name."""
    return {step.name: step for step in PIPELINE}


def get_step(name: str) -> Step:
    """One step by name, or a KeyError listing the names."""
    steps = steps_by_name()
    if name not in steps:
        raise KeyError(f"no step {name!r}; the steps are {', '.join(steps)}")
    return steps[name]


def read_back(ctx: StepContext) -> tuple[Step, ...]:
    """The steps a rerun of this run reads back from its folder instead of running: every step before register,
    once an earlier attempt (same params and data) began registering. Its model and records were complete then,
    and training again would register a second, different model for one run."""
    if register.begun(ctx) is None:
        return ()
    return PIPELINE[: PIPELINE.index(register.STEP)]
