"""The gate step: the champion pulled, verified and re-scored on the same test split; the pure gate decides.

Nothing is written to the registry here. The decision and the model card go into the run folder.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace

from headstart.library.evaluation.champion import challenger_report, score_champion
from headstart.library.evaluation.gate import Decision, data_health_rules, decide
from headstart.library.registry.registry import open_registry
from headstart.library.reports.model_card import render_model_card
from tasks.step import StepContext

log = logging.getLogger(__name__)


def run(ctx: StepContext) -> Decision:
    """Judge the challenger against the current champion (or the floors alone on the first run); write the
    decision and the model card."""
    decision = judge(ctx)
    ctx.run.decision.write_text(json.dumps(decision.to_dict(), indent=2))
    trained, evaluation = ctx.result("train"), ctx.result("evaluate")
    ctx.run.model_card.write_text(render_model_card(asdict(trained.config), evaluation.metrics, decision))
    log.info("gate decision %s against %s", decision.verdict, decision.champion or "no champion")
    return decision


def judge(ctx: StepContext) -> Decision:
    """The decision against the champion as the registry names it now (nothing written but the champion's
    verified pull under ``champion/<version>/``)."""
    trained, evaluation = ctx.result("train"), ctx.result("evaluate")
    challenger = challenger_report(trained.config, evaluation)
    registry = open_registry(ctx.params.registry)
    history = registry.history()  # the entry judged against: promotion may only come right after it
    seq, version = (history[-1].seq, history[-1].version) if history else (0, None)
    report = None
    if version is not None:
        split, batch_size = ctx.result("split").table, ctx.params.evaluate.batch_size
        from headstart.library.training.features import feature_store  # torch: only to score a champion

        report = score_champion(registry, version, split, ctx.run.champion, batch_size, feature_store(ctx.params))
    decision = decide(challenger, report, ctx.params.gate, version, ctx.allow_class_change)
    health = data_health_rules(ctx.result("health").summary(), ctx.params.health.max_drift)
    recall = {c: m["recall"] for c, m in report.metrics["per_class"].items()} if report and report.metrics else None
    return replace(decision.with_rules(health), champion_seq=seq, champion_recall=recall)


def load(ctx: StepContext) -> Decision:
    """The decision as written."""
    return Decision.from_dict(json.loads(ctx.run.decision.read_text()))
