"""The health step: suspected label errors and drift from the champion's training data, judged by a GX suite
(``health.json``); too many suspected label errors stop the run before training. The reference sample of the
training features it writes is registered with the version (the next run's drift baseline)."""

from __future__ import annotations

from headstart.ground.errors import ValidationFailed
from headstart.library.health import report as health_report
from headstart.library.health.checkup import examine
from headstart.library.health.reference import to_bytes
from headstart.library.registry.registry import open_registry
from tasks.step import StepContext, first_few


def run(ctx: StepContext) -> health_report.HealthReport:
    """Examine the split's training rows; write ``health.json`` and the drift reference."""
    registry = open_registry(ctx.params.registry) if ctx.params.health.drift else None
    report, reference = examine(ctx.result("split"), ctx.params, registry)
    health_report.save(report, ctx.run.health)
    ctx.run.health_reference.unlink(missing_ok=True)  # never a stale reference from an earlier attempt
    if reference is not None:
        ctx.run.health_reference.write_bytes(to_bytes(reference))
    return report


def check(ctx: StepContext, report: health_report.HealthReport) -> None:
    """Stop the run when an ``error`` check of the health suite failed."""
    if report.success:
        return
    shown = first_few([f"{f.check}: {f.reason}" for f in report.failures])
    raise ValidationFailed(f"the training data failed the health checks: {shown}. Full report: {ctx.run.health}")


def load(ctx: StepContext) -> health_report.HealthReport:
    """``health.json`` as written."""
    return health_report.load(ctx.run.health)
