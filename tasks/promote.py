"""Judging a finished run against the champion, registering it, and moving the alias only on PASS."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from headstart.config import GateParams, RegistryParams
from headstart.errors import DataError
from tasks.evaluate import CONFUSION_FILE, METRICS_FILE, evaluate
from tasks.gate import Decision, ScoreReport, decide
from tasks.model_card import render_model_card
from tasks.model_io import read_config
from tasks.registry import AliasRecord, Registry
from tasks.split import load_split
from tasks.storage import open_storage

log = logging.getLogger(__name__)
DECISION_FILE = "decision.json"
CARD_FILE = "model_card.md"


def open_registry(params: RegistryParams) -> Registry:
    """The registry named in params (``registry.uri``, ``registry.model_name``)."""
    return Registry(open_storage(params.uri), params.model_name)


def challenger_report(run_dir: Path) -> ScoreReport:
    """The challenger as the evaluate step left it: metrics, classes, split params and per-image correctness."""
    config = read_config(run_dir / "model")
    confusion = pd.read_csv(run_dir / CONFUSION_FILE, dtype=str)
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    correct = (confusion["actual"] == confusion["predicted"]).tolist()
    return ScoreReport(metrics, config.classes, config.lineage.get("split", {}), correct)


def score_champion(
    registry: Registry, split_csv: Path, run_dir: Path, batch_size: int
) -> tuple[ScoreReport, str] | None:
    """Pull the champion (verified) and score it on the challenger's test split; None when there is none.

    A champion with another class set cannot be scored on this split: it is reported with its classes only.
    """
    version = registry.champion()
    if version is None:
        return None
    model_dir = registry.pull(version, run_dir / "champion")
    config = read_config(model_dir)
    split = load_split(split_csv)
    champion_split = config.lineage.get("split", {})
    if set(split.loc[split["split"] == "test", "label"]) - set(config.classes):
        return ScoreReport({}, config.classes, champion_split), version
    metrics, pred = evaluate(model_dir, split, batch_size)
    return ScoreReport(metrics, config.classes, champion_split, (pred.y_true == pred.y_pred).tolist()), version


def judge(
    run_dir: Path, split_csv: Path, gate: GateParams, registry: Registry, batch_size: int, allow_class_change: bool
) -> Decision:
    """The gate step: score the champion on the same split, decide, write decision.json and the model card."""
    challenger = challenger_report(run_dir)
    champion = score_champion(registry, split_csv, run_dir, batch_size)
    report, version = champion if champion else (None, None)
    decision = decide(challenger, report, gate, version, allow_class_change)
    (run_dir / DECISION_FILE).write_text(json.dumps(decision.to_dict(), indent=2))
    config = json.loads((run_dir / "model" / "config.json").read_text())
    (run_dir / CARD_FILE).write_text(render_model_card(config, challenger.metrics, decision))
    log.info("gate decision %s against %s", decision.verdict, version or "no champion")
    return decision


def run_files(run_dir: Path) -> dict[str, bytes]:
    """What a version holds: the model folder's files plus metrics, decision, model card and lineage."""
    model_dir = run_dir / "model"
    if not (model_dir / "config.json").is_file() or not (run_dir / DECISION_FILE).is_file():
        raise DataError(f"{run_dir}: not a finished run (needs model/ and {DECISION_FILE}); run the pipeline first")
    files = {p.name: p.read_bytes() for p in sorted(model_dir.iterdir()) if p.is_file()}
    for name in (METRICS_FILE, DECISION_FILE, CARD_FILE, CONFUSION_FILE):
        if (run_dir / name).is_file():
            files[name] = (run_dir / name).read_bytes()
    lineage = json.loads(files["config.json"])["lineage"]
    files["lineage.json"] = json.dumps(lineage, indent=2).encode()
    return files


def register_run(registry: Registry, run_dir: Path) -> str:
    """Register a finished run as a new version (every challenger is registered, PASS or FAIL)."""
    files = run_files(run_dir)
    metrics = json.loads(files[METRICS_FILE])
    decision = json.loads(files[DECISION_FILE])
    lineage = json.loads(files["lineage.json"])
    summary = {
        "dataset": lineage.get("dataset"),
        "data_md5": lineage.get("data_md5"),
        "metrics": {k: metrics[k] for k in ("accuracy", "macro_f1")},
        "decision": decision["verdict"],
        "flow_run_id": lineage.get("flow_run_id"),
    }
    version = registry.register(files, summary)
    log.info("registered %s/%s (%s)", registry.model, version, decision["verdict"])
    return version


def promote_if_passed(registry: Registry, version: str, decision: Decision) -> AliasRecord | None:
    """Move the champion alias to ``version`` only when the decision passed."""
    if not decision.passed:
        return None
    return registry.set_champion(version, "promote", f"gate PASS against {decision.champion or 'no champion'}")
