"""The pipeline table: the one ordered definition of the retrain steps.

It drives the Prefect flow (``flows/retrain.py``), ``headstart step NAME`` and ``dvc.yaml`` (rendered by
``tasks/dvc_stages.py``; a test keeps the repository's dvc.yaml equal to it). The order is the run lifecycle:
nothing after ``promote`` can fail the run.

Each row names its step module by string: the table is read without importing any step (``headstart init``
renders dvc.yaml, ``headstart step NAME`` imports only NAME's module and the producers it reads back).
"""

from __future__ import annotations

from tasks.step import Step, StepContext

PIPELINE: tuple[Step, ...] = (
    Step(
        name="validate",
        module="tasks.validate",
        writes=("validate", "validate-test"),
        params=("data.dir", "data.test_dir", "validate"),
        data_params=("data.dir", "data.test_dir"),
    ),
    Step(  # near-duplicate leakage handled here (health.leakage)
        name="split",
        module="tasks.split",
        reads=("validate", "validate-test"),
        writes=("split", "near_duplicates"),
        params=(
            "split",
            "health.leakage",
            "health.duplicate_similarity",
            "health.duplicate_edge_similarity",
            "health.within_duplicates",
        ),
    ),
    Step(  # label issues and drift; may stop the run before training
        name="health",
        module="tasks.health",
        reads=("split", "near_duplicates"),
        writes=("health",),  # health_reference.safetensors beside it travels with the version, not through DVC
        params=("health", "model", "train.feature_cache", "train.seed", "evaluate.batch_size", "registry"),
    ),
    Step(
        name="train",
        module="tasks.train",
        reads=("split", "health"),  # health: trains only on data that passed it
        writes=("model",),  # checkpoints/ is resume state, not an output
        plots=("curves",),
        params=("augment", "model", "train", "evaluate.batch_size"),
    ),
    Step(
        name="evaluate",
        module="tasks.evaluate",
        reads=("model", "split"),
        metrics=("metrics",),
        plots=("confusion",),
        params=("evaluate", "model.weights", "train.classifier", "train.features_fit", "train.seed"),
    ),
    Step(  # the champion pulled, verified and re-scored on the same split; a pure decision
        name="gate",
        module="tasks.gate",
        reads=("model", "metrics", "confusion", "split", "health"),
        writes=("decision", "model_card"),
        params=("gate", "registry", "evaluate.batch_size", "health.max_drift"),
        retries=2,
    ),
    Step(  # every challenger, PASS or FAIL
        name="register",
        module="tasks.register",
        reads=("near_duplicates", "health", "model", "metrics", "confusion", "decision", "model_card"),
        writes=("registered",),
        params=("registry",),
        retries=2,
    ),
    Step(  # summary, model card and dashboards before the champion moves
        name="report",
        module="tasks.report",
        reads=("health", "split", "model", "curves", "metrics", "confusion", "decision", "registered"),
        writes=("dashboard", "summary"),
        params=("augment", "registry", "data", "model"),
    ),
    Step(  # the alias moves only now, and only on PASS
        name="promote",
        module="tasks.promote",
        reads=("decision", "registered", "summary"),  # the summary: report runs before the alias moves
        writes=("promotion",),
        params=("registry",),
        retries=2,
    ),
    Step(  # best-effort: Prefect artifacts
        name="publish",
        module="tasks.publish",
        reads=("summary", "dashboard", "promotion"),
        in_dvc=False,
        best_effort=True,
    ),
)


# What `headstart reproduce` runs again on a registered version's recorded data and params (the gate, the registry
# and the reports are the record it compares with, not part of the model).
REBUILT_STEPS = ("validate", "split", "train", "evaluate")


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
    from tasks import register

    if register.begun(ctx) is None:
        return ()
    return PIPELINE[: PIPELINE.index(get_step("register"))]
