"""Registry housekeeping: which versions may go (a pure plan), then removing them, manifest first.

Never removed: the champion, any version named in the alias history, anything under ``events/``. An upload that
never got its manifest (a crashed register) goes once older than the grace period; complete versions go only by
the retention policy in params (``registry.keep_last``, ``registry.keep_failed_days``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from headstart.ground.params import RegistryParams
from headstart.library.registry.registry import MANIFEST, VERSION_ID, Registry, version_created_at


@dataclass(frozen=True)
class GcPlan:
    """What a collection removes and why; ``kept`` says why each protected version stays."""

    versions: dict[str, str] = field(default_factory=dict)  # complete version -> reason it goes
    incomplete: dict[str, str] = field(default_factory=dict)  # upload without a manifest -> reason it goes
    kept: dict[str, str] = field(default_factory=dict)  # version -> why it is protected


def plan_gc(
    manifests: list[dict], incomplete: list[str], protected: dict[str, str], policy: RegistryParams, now: datetime
) -> GcPlan:
    """Decide, without touching storage, what may be removed (versions oldest first)."""
    plan = GcPlan(kept=dict(protected))
    grace = timedelta(hours=policy.incomplete_grace_hours)
    for version in incomplete:
        if now - version_created_at(version) > grace:
            plan.incomplete[version] = f"no manifest after {policy.incomplete_grace_hours:g} h"
    ids = [m["version"] for m in manifests]
    newest = set(ids[-policy.keep_last :]) if policy.keep_last else set(ids)
    for manifest in manifests:
        version = manifest["version"]
        if version in protected:
            continue
        if policy.keep_last and version not in newest:
            plan.versions[version] = f"older than the newest {policy.keep_last} (registry.keep_last)"
        elif (
            policy.keep_failed_days is not None
            and manifest.get("decision") == "FAIL"
            and now - version_created_at(version) > timedelta(days=policy.keep_failed_days)
        ):
            plan.versions[version] = f"FAIL, older than {policy.keep_failed_days} days (registry.keep_failed_days)"
    return plan


def collect(registry: Registry, policy: RegistryParams, dry_run: bool = True, now: datetime | None = None) -> GcPlan:
    """Plan and, unless ``dry_run``, remove: a complete version's manifest first (so it is never listed half
    removed; a crash leaves an incomplete upload the next collection clears), then its files."""
    scan = registry.scan_versions()
    manifests = scan.verified  # only verified versions count toward keep_last
    # a manifest that is not one is debris, like an upload that never got one; a readable manifest that failed
    # verification (unsigned, replaced, copied) is kept and named: a person judges it, gc does not
    complete = {m["version"] for m in manifests} | (set(scan.refused) - scan.damaged)
    prefix = registry.model + "/versions/"
    keys = registry.storage.list(prefix)
    uploads = sorted({k[len(prefix) :].split("/")[0] for k in keys if k.count("/") == 3})
    incomplete = [v for v in uploads if VERSION_ID.match(v) and v not in complete]
    protected = {r.version: f"named by alias entry #{r.seq} ({r.action})" for r in registry.history()}
    for version in set(scan.refused) - scan.damaged:
        protected.setdefault(version, f"failed verification, kept for a person to judge: {scan.refused[version]}")
    plan = plan_gc(manifests, incomplete, protected, policy, now or datetime.now(UTC))
    if dry_run:
        return plan
    for version in [*plan.versions, *plan.incomplete]:
        mine = [k for k in keys if k.startswith(f"{prefix}{version}/")]
        for key in sorted(mine, key=lambda k: not k.endswith(f"/{MANIFEST}")):  # the manifest first
            registry.storage.delete(key)
    return plan
