"""The retrain flow: the pipeline table's steps, in order, each as a Prefect task; the flow only wires them."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed, State
from prefect.task_engine import TaskRunTimeoutError

from flows.concurrency import retrain_slot
from headstart.ground.environment import log_project_at_info
from headstart.ground.errors import ConfigError, DataError, HeadstartError, RunTimedOut
from headstart.ground.params import Params, load_params
from headstart.ground.paths import inside
from headstart.ground.run_folder import RunFolder, run_folder_for
from headstart.library.registry.errors import PromotionConflict
from tasks.pipeline import PIPELINE, read_back, steps_by_name
from tasks.publish import final_summary
from tasks.step import Step, StepContext

log = logging.getLogger(__name__)


def _retry_unless_conflict(task, task_run, state) -> bool:
    """Retry registry I/O, but never a lost promotion race (retrying would silently take the next number) and
    never a step that ran out of time (each attempt would get the whole limit again)."""
    return not isinstance(state.result(raise_on_failure=False), PromotionConflict | TaskRunTimeoutError)


def as_task(step: Step, timeout_s: float | None = None):
    """The step as a Prefect task: the decorator carries policy only (registry I/O retries with backoff, on top
    of botocore's own; the time limit). Steps take the run context, so nothing is hashed or cached."""
    policy: dict = {"timeout_seconds": timeout_s}
    if step.retries:
        retry = {"retries": step.retries, "retry_delay_seconds": [2, 10], "retry_condition_fn": _retry_unless_conflict}
        policy |= retry
    return task(name=step.name, cache_policy=NO_CACHE, **policy)(step.run)


def step_time_limit(params: Params, step: Step, started: float) -> float:
    """Seconds ``step`` may take: its own ``run.step_timeout_minutes`` entry, and never more than what is left
    of ``run.timeout_minutes``."""
    left = params.run.timeout_minutes * 60 - (time.monotonic() - started)
    if left <= 0:
        raise RunTimedOut(f"the run went past run.timeout_minutes={params.run.timeout_minutes:g} before {step.name}")
    own = params.run.step_timeout_minutes.get(step.name)
    return min(left, own * 60) if own else left


def check_step_names(params: Params) -> None:
    """``run.step_timeout_minutes`` may only name steps of the pipeline table."""
    unknown = sorted(set(params.run.step_timeout_minutes) - set(steps_by_name()))
    if unknown:
        raise ConfigError(f"run.step_timeout_minutes names no step {unknown}; the steps: {', '.join(steps_by_name())}")


def load_run_params(
    params_path: str, overrides: list[str] | None, run_dir: str | None = None, dataset: str | None = None
) -> Params:
    """The run's params, every path it was given checked to stay inside the workspace (deployments run there)
    and the fixed test set present."""
    workspace = Path.cwd()
    inside(workspace, params_path, "params_path")
    if run_dir:
        inside(workspace, run_dir, "run_dir")
    if dataset:
        inside(workspace / "data", dataset, "dataset")
        overrides = [*(overrides or []), f"data.dir={json.dumps(f'data/{dataset}')}"]  # JSON: YAML reads it as is
    params = load_params(params_path, overrides)
    check_step_names(params)
    from headstart.library.data.transforms import check_augmentations  # albumentations: this run trains

    check_augmentations(params)  # an unknown transform or argument is named before any step starts
    for what, folder in (("data.dir", params.data.dir), ("data.test_dir", params.data.test_dir)):
        if folder is not None:
            inside(workspace, folder, what)
    if params.data.test_dir is not None and not Path(params.data.test_dir).is_dir():
        raise DataError(
            f"{params.data.test_dir}: the fixed test set (data.test_dir in params.yaml) was not found; set "
            "data.test_dir to the test set's folder (`headstart data import folder SRC --name NAME` imports one), or "
            f"to null to draw the test split from {params.data.dir} by content hash; for one run: "
            "`headstart run --test-data DIR` or `headstart run --set data.test_dir=null`"
        )
    return params


@flow(name="retrain")
def retrain(
    params_path: str = "params.yaml",
    overrides: list[str] | None = None,
    run_dir: str | None = None,
    allow_class_change: bool = False,
    dataset: str | None = None,
    old_md5: str | None = None,
    new_md5: str | None = None,
) -> dict | State:
    """Retrain on ``data.dir`` (or ``data/<dataset>``) and ``data.test_dir``; return the run summary.

    ``dataset``, ``old_md5`` and ``new_md5`` come from the data-change trigger and are recorded with the run.
    Only one retrain per model runs at a time (a strict global concurrency limit). Expected failures (invalid
    data, bad params, missing weights, storage down) end the run Failed with their message and no traceback.
    """
    log_project_at_info()
    try:
        params = load_run_params(params_path, overrides, run_dir, dataset)
        get_run_logger().info(
            "taking the retrain slot of %s (waits while another run holds it, or until a crashed run's lease lapses)",
            params.registry.model_name,
        )
        with retrain_slot(params.registry.model_name):
            trigger = {"dataset": dataset, "old_md5": old_md5, "new_md5": new_md5} if new_md5 is not None else None
            return run_pipeline(params, run_dir, allow_class_change, trigger)
    except HeadstartError as exc:
        get_run_logger().error("%s", exc)
        return Failed(message=str(exc))


def run_pipeline(params: Params, run_dir: str | None, allow_class_change: bool, trigger: dict | None = None) -> dict:
    """Every step of the pipeline table in order, each result handed to the next in memory; returns the summary."""
    ctx = new_context(params, run_dir, allow_class_change, trigger)
    run_steps(ctx, PIPELINE)
    return ctx.results.get("publish") or final_summary(ctx)


def new_context(
    params: Params, run_dir: str | None, allow_class_change: bool = False, trigger: dict | None = None
) -> StepContext:
    """The context of a run of this flow run: its run folder (``runs/<time>-<flow run>`` unless given)."""
    run_id = str(flow_run.id or "local")
    run = RunFolder(Path(run_dir)) if run_dir else run_folder_for(Path("runs"), run_id)
    return StepContext(
        params, run, steps_by_name(), flow_run_id=run_id, allow_class_change=allow_class_change, trigger=trigger
    )


def run_steps(ctx: StepContext, steps: tuple[Step, ...]) -> None:
    """``steps`` (a stretch of the pipeline table) in order, as Prefect tasks; results of earlier steps are read
    back from the run folder when a step asks for them.

    Steps marked best-effort run after the champion moved: their failure is logged, never fails the run.
    """
    run = ctx.run
    done = read_back(ctx)
    if done:
        get_run_logger().info(
            "%s began registering in an earlier attempt: reading %s back, not running them again",
            run.root,
            ", ".join(step.name for step in done),
        )
    started = time.monotonic()
    took: dict[str, float] = {}  # seconds per step run now, logged on one line (a failed run's too)
    try:
        for step in steps:
            if step in done:
                ctx.result(step.name)  # read back (and checked) from the run folder
                continue
            began = time.monotonic()
            _run_step(ctx, step, started)
            took[step.name] = time.monotonic() - began
    finally:
        if took:
            get_run_logger().info("step times: %s", " | ".join(f"{name} {s:.1f} s" for name, s in took.items()))


def _run_step(ctx: StepContext, step: Step, started: float) -> None:
    """One step as a Prefect task within what is left of the run's time; a best-effort step's failure is logged."""
    if not step.best_effort:
        limit = step_time_limit(ctx.params, step, started)
        try:
            ctx.results[step.name] = as_task(step, limit)(ctx)
        except TaskRunTimeoutError:  # Prefect's task timeout (an alarm: it interrupts a hung read too)
            raise RunTimedOut(
                f"step {step.name} timed out after {limit:.0f} s (run.step_timeout_minutes, run.timeout_minutes)"
            ) from None
        if step.check is not None:
            step.check(ctx, ctx.results[step.name])  # outside the task: one clear message, no traceback
        return
    try:  # the time limit too: past run.timeout_minutes a best-effort step is skipped, the run stands
        ctx.results[step.name] = as_task(step, step_time_limit(ctx.params, step, started))(ctx)
    except Exception as exc:  # after the promote step nothing may turn the run Failed: say so and carry on
        get_run_logger().warning("%s failed after the promote step (the run stands): %s", step.name, exc)
