"""The retrain flow: validate → split → train → evaluate → gate → register → promote, each a plain function
from ``tasks/``."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.states import Failed, State

from flows.artifacts import publish
from flows.concurrency import retrain_slot
from headstart import lineage
from headstart.config import Params, load_params
from headstart.errors import HeadstartError, ValidationFailed
from tasks.evaluate import evaluate_model
from tasks.model_io import read_config
from tasks.promote import judge, open_registry, promote_if_passed, register_run
from tasks.registry import PromotionConflict
from tasks.split import split_dataset
from tasks.train import train_model
from tasks.validate import ValidationReport, validate_dataset


def _retry_unless_conflict(task, task_run, state) -> bool:
    """Retry registry I/O, but never a lost promotion race: retrying would silently take the next number."""
    return not isinstance(state.result(raise_on_failure=False), PromotionConflict)


# Thin wrappers: the decorator carries policy only. Steps pass paths, so nothing needs hashing or caching.
# Registry I/O retries with backoff on top of botocore's own retries.
IO_RETRIES = {"retries": 2, "retry_delay_seconds": [2, 10], "retry_condition_fn": _retry_unless_conflict}
validate_step = task(name="validate", cache_policy=NO_CACHE)(validate_dataset)
split_step = task(name="split", cache_policy=NO_CACHE)(split_dataset)
train_step = task(name="train", cache_policy=NO_CACHE)(train_model)
evaluate_step = task(name="evaluate", cache_policy=NO_CACHE)(evaluate_model)
gate_step = task(name="gate", cache_policy=NO_CACHE, **IO_RETRIES)(judge)
register_step = task(name="register", cache_policy=NO_CACHE, **IO_RETRIES)(register_run)
promote_step = task(name="promote", cache_policy=NO_CACHE, **IO_RETRIES)(promote_if_passed)
publish_step = task(name="publish-artifacts", cache_policy=NO_CACHE)(publish)


def find_run_dir(runs: Path, run_id: str) -> Path | None:
    """The folder a flow run already has under ``runs`` (named ``<UTC time>-<run id prefix>``), if any."""
    existing = sorted(runs.glob(f"*-{str(run_id)[:8]}"))
    return existing[-1] if existing else None


def default_run_dir(run_id: str) -> Path:
    """``runs/<UTC time>-<run id prefix>``: sortable, unique per flow run; a retried run gets its folder back,
    so training resumes from its last checkpoint."""
    runs = Path("runs")
    return find_run_dir(runs, run_id) or runs / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{run_id[:8]}"


def _log_progress_at_info() -> None:
    """Step progress (epochs, freezing, gate) is logged at INFO by the project's loggers; Prefect forwards them to
    the run's logs when PREFECT_LOGGING_EXTRA_LOGGERS names them (prefect.yaml's job env does), but leaves their
    level at the root's WARNING."""
    for name in ("tasks", "headstart", "flows"):
        logging.getLogger(name).setLevel(logging.INFO)


def _require_valid(report: ValidationReport, report_dir: Path) -> None:
    if not report.success:
        shown = "; ".join(f"{f.subject}: {f.reason}" for f in report.failures[:5])
        more = f" (and {len(report.failures) - 5} more)" if len(report.failures) > 5 else ""
        raise ValidationFailed(
            f"{report.root} failed validation: {shown}{more}. Full report: {report_dir / 'validation.json'}"
        )


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
    _log_progress_at_info()
    try:
        if dataset:
            overrides = [*(overrides or []), f"data.dir=data/{dataset}"]
        params = load_params(params_path, overrides)
        get_run_logger().info(
            "taking the retrain slot of %s (waits while another run holds it, or until a crashed run's lease lapses)",
            params.registry.model_name,
        )
        with retrain_slot(params.registry.model_name):
            trigger = {"dataset": dataset, "old_md5": old_md5, "new_md5": new_md5} if new_md5 is not None else None
            summary = run_pipeline(params, run_dir, allow_class_change, trigger)
    except HeadstartError as exc:
        get_run_logger().error("%s", exc)
        return Failed(message=str(exc))
    return summary


def run_pipeline(params: Params, run_dir: str | None, allow_class_change: bool, trigger: dict | None = None) -> dict:
    """validate → split → train → evaluate → gate → register → promote, everything under the run folder."""
    run_id = str(flow_run.id or "local")
    out = Path(run_dir) if run_dir else default_run_dir(run_id)
    data_dir = Path(params.data.dir)
    test_dir = Path(params.data.test_dir) if params.data.test_dir else None

    report = validate_step(data_dir, params.validate_, out / "validate")
    _require_valid(report, out / "validate")
    if test_dir is not None:
        _require_valid(validate_step(test_dir, params.validate_, out / "validate-test"), out / "validate-test")

    split = split_step(
        out / "validate" / "manifest.csv",
        data_dir,
        params.split,
        out / "split.csv",
        out / "validate-test" / "manifest.csv" if test_dir else None,
        test_dir,
    )
    record = lineage.collect(Path.cwd(), params, run_id)
    trained = train_step(out / "split.csv", params, out, record)
    metrics = evaluate_step(trained.model_dir, out / "split.csv", out, params.evaluate.batch_size)

    registry = open_registry(params.registry)
    decision = gate_step(out, out / "split.csv", params.gate, registry, params.evaluate.batch_size, allow_class_change)
    version = register_step(registry, out)  # every challenger is registered, PASS or FAIL
    promoted = promote_step(registry, version, decision)  # the alias moves only now, and only on PASS

    summary = {
        "run_id": run_id,
        "run_dir": str(out),
        "data_dir": str(data_dir),
        "data_md5": record["data_md5"],
        "test_data_md5": record["test_data_md5"],
        "scenario": read_config(trained.model_dir).scenario,  # `auto` resolved
        "backbone": params.model.backbone,
        "weights": params.model.weights,
        "split": split.counts(),
        "metrics": {k: metrics[k] for k in ("accuracy", "macro_f1", "test_images")},
        "history": trained.history,
        "features_from_cache": trained.features_from_cache,
        "model_dir": str(trained.model_dir),
        "lineage": record,
        "trigger": trigger,  # the data change that started this run, if any
        "decision": decision.to_dict(),
        "registry": registry.storage.uri,
        "version": version,
        "champion": version if promoted else decision.champion,
    }
    # dashboards in the Prefect UI
    summary["artifacts"] = publish_step(summary, params.registry.model_name, params.augment)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
