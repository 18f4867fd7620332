"""The promote step: the champion alias moves only now, and only on PASS (a create-only alias entry)."""

from __future__ import annotations

import json

from headstart.library.registry.registry import AliasRecord, open_registry
from tasks.step import Step, StepContext


def run(ctx: StepContext) -> AliasRecord | None:
    """Make the registered version champion when the gate passed; record the outcome either way."""
    decision, version = ctx.result("gate"), ctx.result("register")
    record = None
    if decision.passed:
        reason = f"gate PASS against {decision.champion or 'no champion'}"
        record = open_registry(ctx.params.registry).set_champion(version, "promote", reason)
    outcome = {"version": version, "promoted": record is not None, "alias_seq": record.seq if record else None}
    ctx.run.promotion.write_text(json.dumps(outcome))
    return record


def load(ctx: StepContext) -> AliasRecord | None:
    """The alias entry this run created, if any."""
    outcome = json.loads(ctx.run.promotion.read_text())
    if not outcome["promoted"]:
        return None
    [record] = [r for r in open_registry(ctx.params.registry).history() if r.seq == outcome["alias_seq"]]
    return record


STEP = Step(
    name="promote",
    run=run,
    load=load,
    reads=("decision", "registered", "summary"),  # the summary: report runs before the alias moves
    writes=("promotion",),
    params=("registry",),
    retries=2,
)
