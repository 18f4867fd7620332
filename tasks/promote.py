"""The promote step: the champion alias moves only now, only on PASS, and only as the entry right after the one
the gate judged against (create-only). If the champion moved in between, the conflict is recorded and the
challenger is judged once more against the new champion; a second move ends the run without promoting."""

from __future__ import annotations

import json
import logging

from headstart.library.registry.errors import PromotionConflict
from headstart.library.registry.registry import AliasRecord, open_registry
from tasks import gate
from tasks.step import StepContext

log = logging.getLogger(__name__)
REJUDGED = "promote:rejudged"  # the re-judged decision, kept in the run context across Prefect retries


def run(ctx: StepContext) -> AliasRecord | None:
    """Promote the registered version when the gate passed; record the outcome either way."""
    registry, version = open_registry(ctx.params.registry), ctx.result("register")
    decision, rejudged, record = ctx.result("gate"), False, None
    if ctx.results.get(REJUDGED) is not None:  # a Prefect retry after the re-judgement: never judge a third time
        decision, rejudged = ctx.results[REJUDGED], True
    if decision.passed:
        try:
            record = registry.promote_after(version, decision.champion_seq, _reason(decision))
        except PromotionConflict as moved:
            if rejudged:
                raise  # the champion moved twice: the run ends without promoting
            log.warning("%s; judging %s again against the champion now", moved, version)
            # re-scores the new champion on the same split; kept in promotion.json (decision.json is the gate's)
            decision, rejudged = gate.judge(ctx), True
            ctx.results[REJUDGED] = decision
            if decision.passed:  # a second move raises PromotionConflict: nothing is promoted unjudged
                record = registry.promote_after(version, decision.champion_seq, _reason(decision))
    outcome = {
        "version": version,
        "promoted": record is not None,
        "alias_seq": record.seq if record else None,
        "judged_against_seq": decision.champion_seq,
        "rejudged": rejudged,
        **({"rejudged_decision": decision.to_dict()} if rejudged else {}),
    }
    ctx.run.promotion.write_text(json.dumps(outcome))
    return record


def _reason(decision) -> str:
    return f"gate PASS against {decision.champion or 'no champion'} (alias #{decision.champion_seq})"


def load(ctx: StepContext) -> AliasRecord | None:
    """The alias entry this run created, if any."""
    outcome = json.loads(ctx.run.promotion.read_text())
    if not outcome["promoted"]:
        return None
    [record] = [r for r in open_registry(ctx.params.registry).history() if r.seq == outcome["alias_seq"]]
    return record
