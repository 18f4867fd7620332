"""The sweep flow: a SWEEP.yaml's trials fanned out over a Dask cluster (Prefect's ``DaskTaskRunner``), the best
on the validation split judged like any run.

validate → split → health once (the sweep's folder) · each trial: train + score on validation in its own folder,
as a Prefect task on a Dask worker · the best trial's folder: evaluate → gate → register → report → promote →
publish, holding the model's retrain slot like any run. ``sweep.json`` and a ``<model>-sweep`` table artifact
record every trial.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

from flows.concurrency import retrain_slot
from flows.retrain import load_run_params, new_context, run_steps
from headstart.ground.environment import log_project_at_info
from headstart.ground.errors import ConfigError, HeadstartError
from headstart.ground.paths import inside
from headstart.library.storage.backends import StorageError
from tasks.pipeline import PIPELINE, get_step
from tasks.publish import final_summary
from tasks.remote_trial import fetch_trial, plan_exchange, publish_prepared, run_remote_trial
from tasks.sweep import (
    MAX_TRIALS,
    Trial,
    best_trial,
    parse_sweep,
    run_trial,
    save_sweep,
    trial_params,
    validation_rows,
)


def task_runner(cluster: str):
    """Prefect's DaskTaskRunner for ``--cluster``: ``local:N`` starts a LocalCluster of N single-threaded worker
    processes on 127.0.0.1; ``tcp://HOST:PORT`` uses a running scheduler, whose workers share no file system with
    this machine (:mod:`tasks.remote_trial`)."""
    kind, _, count = cluster.partition(":")
    if not cluster.startswith("tcp://") and (kind != "local" or not count.isdigit() or int(count) < 1):
        raise ConfigError(  # before dask is imported
            f"cluster {cluster!r}: give local:N (N worker processes here) or tcp://HOST:PORT, as in "
            "`headstart sweep SWEEP.yaml --cluster local:2`"
        )
    import dask
    from prefect_dask import DaskTaskRunner

    # trials start processes of their own (DataLoader workers, torchrun ranks): daemonic workers may not
    dask.config.set({"distributed.worker.daemon": False})
    if cluster.startswith("tcp://"):
        return DaskTaskRunner(address=cluster)
    workers = {"n_workers": int(count), "threads_per_worker": 1, "processes": True}
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={**workers, "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"},
    )


def worker_threads(cluster: str) -> int | None:
    """torch threads per trial on a LocalCluster: the cores shared among its workers (a remote cluster's workers
    keep their own default)."""
    if not cluster.startswith("local:"):
        return None
    return max(1, (os.cpu_count() or 1) // int(cluster.partition(":")[2]))


def _retry_unless_expected(task, task_run, state) -> bool:
    """Retry what may pass next time (a lost file system, a killed DataLoader, a storage outage: a trial that had
    finished only hands its folder over again); never an expected failure (bad params, invalid data), which would
    only fail again after training once more."""
    failure = state.result(raise_on_failure=False)
    return isinstance(failure, StorageError) or not isinstance(failure, HeadstartError)


# A trial that raises is retried by Prefect; a trial whose Dask worker died is rescheduled by Dask on another
# worker (distributed.scheduler.allowed-failures). Either way the trial resumes its own checkpoint (on a cluster
# that shares no file system: where its machine kept one, else it trains again).
def _trial_task(function):
    return task(
        name="sweep-trial",
        retries=2,
        retry_delay_seconds=2,
        retry_condition_fn=_retry_unless_expected,
        cache_policy=NO_CACHE,
    )(function)


trial_task = _trial_task(run_trial)
remote_trial_task = _trial_task(run_remote_trial)


@flow(name="sweep")
def sweep(
    sweep_path: str,
    params_path: str = "params.yaml",
    overrides: list[str] | None = None,
    run_dir: str | None = None,
    cluster: str = "local:1",
    allow_class_change: bool = False,
    max_trials: int = MAX_TRIALS,
    sweep_text: str | None = None,
) -> dict | State:
    """Run every trial of ``sweep_path`` (``--set`` overrides apply to all), choose the best on the validation
    split, and take it through evaluate → gate → register → promote; returns the chosen run's summary with a
    ``sweep`` entry.

    The Dask cluster is the flow's task runner, chosen by the caller: ``sweep.with_options(task_runner=
    task_runner(cluster))`` (what ``headstart sweep`` does); ``cluster`` only records it."""
    from prefect.artifacts import create_table_artifact

    log_project_at_info()
    logger = get_run_logger()
    try:
        if sweep_text is None:  # a deployment's parameter: a file inside the workspace only
            inside(Path.cwd(), sweep_path, "sweep_path")
            sweep_text = Path(sweep_path).read_text() if Path(sweep_path).is_file() else None
        if sweep_text is None:
            raise ConfigError(f"{sweep_path}: sweep file not found")
        params = load_run_params(params_path, overrides, run_dir)
        trials = parse_sweep(sweep_text, sweep_path, max_trials)
        by_trial = {t.name: trial_params(Path(params_path), overrides or [], t) for t in trials}  # all checked first
        ctx = new_context(params, run_dir)
        # a remote cluster shares nothing with this machine: what it lacks is named before anything runs
        remote = cluster.startswith("tcp://")
        exchange = plan_exchange(params, list(by_trial.values()), ctx.workspace, ctx.run.root) if remote else None
        logger.info("sweep of %d trials on %s in %s", len(trials), cluster, ctx.run.root)
        run_steps(ctx, PIPELINE[: PIPELINE.index(get_step("train"))])  # validate, split, health: once for all
        validation_rows(ctx.result("split").table)  # before any trial trains: no validation rows, no choice
        threads = params.train.threads or worker_threads(cluster)
        if exchange is None:
            futures = {
                t.name: trial_task.submit(by_trial[t.name], ctx.run.root, t, ctx.flow_run_id, threads) for t in trials
            }
        else:
            publish_prepared(exchange, ctx.run.root)
            logger.info("trials exchange their files through %s/%s", exchange.uri, exchange.run_key)
            futures = {
                t.name: remote_trial_task.submit(by_trial[t.name], exchange, t, ctx.flow_run_id, threads)
                for t in trials
            }
        rows = _collect(trials, futures)
        done = [row for row in rows if "error" not in row]
        spec = {"spec": sweep_text, "spec_sha256": hashlib.sha256(sweep_text.encode()).hexdigest()}
        record = {"sweep": sweep_path, **spec, "cluster": cluster, "overrides": overrides or [], "trials": rows}
        if not done:
            save_sweep(ctx.run.root, record)
            raise HeadstartError(f"every trial failed; see {ctx.run.root / 'sweep.json'}")
        chosen = best_trial(done, params)
        if exchange is not None:  # the chosen trial's folder, from the bucket: judged here like any run
            chosen["run_dir"] = str(fetch_trial(exchange, chosen["trial"], ctx.run.root))
        record |= {"chosen": chosen["trial"], "chosen_by": f"val_{params.gate.primary_metric}"}
        save_sweep(ctx.run.root, record)
        create_table_artifact(
            [_table_row(row, chosen) for row in rows],
            key=f"{params.registry.model_name}-sweep",
            description=f"Sweep {sweep_path}: {len(done)}/{len(rows)} trials, chosen {chosen['trial']} on "
            f"validation {params.gate.primary_metric}",
        )
        logger.info("chose %s %s on validation %s", chosen["trial"], chosen["overrides"], params.gate.primary_metric)
        final = new_context(by_trial[chosen["trial"]], chosen["run_dir"], allow_class_change)
        with retrain_slot(params.registry.model_name):
            run_steps(final, PIPELINE[PIPELINE.index(get_step("evaluate")) :])
        summary = final.results.get("publish") or final_summary(final)
        return {**summary, "sweep": record}
    except HeadstartError as exc:
        logger.error("%s", exc)
        return Failed(message=str(exc))


def _collect(trials: list[Trial], futures: dict) -> list[dict]:
    """Every trial's row, a failed one (after its retries) with its error: one trial never loses the others."""
    rows = []
    for trial in trials:
        try:
            rows.append(futures[trial.name].result())
        except Exception as exc:  # its own failure after retries, or Dask's KilledWorker past allowed-failures
            error = f"{type(exc).__name__}: {exc}"
            rows.append({"trial": trial.name, "overrides": trial.overrides, "error": error})
            get_run_logger().warning("%s failed: %s", trial.name, error)
    return rows


def _table_row(row: dict, chosen: dict) -> dict:
    """One row of the sweep table artifact."""
    return {
        "trial": row["trial"],
        "overrides": ", ".join(f"{k}={v}" for k, v in row["overrides"].items()) or "(base params)",
        "val accuracy": round(row["val_accuracy"], 4) if "val_accuracy" in row else "",
        "val macro-F1": round(row["val_macro_f1"], 4) if "val_macro_f1" in row else "",
        "seconds": row.get("seconds", ""),
        "attempts": row.get("attempts", ""),
        "status": "chosen" if row is chosen else ("failed: " + row["error"] if "error" in row else "done"),
    }
