"""Registry housekeeping: which versions may go (a pure plan), then removing them, manifest first.

Never removed: the champion, any version named in the alias history, anything under ``events/``. An upload that
never got its manifest (a crashed register) goes once older than the grace period; complete versions go only by
the retention policy in params (``registry.keep_last``, ``registry.keep_failed_days``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from headstart.ground.params import RegistryParams
from headstart.library.registry.registry import MANIFEST, VERSION_ID, Registry, version_created_at
from headstart.library.storage.backends import ObjectNotFound

log = logging.getLogger(__name__)
# Between removing the manifests and re-reading the alias history: longer than a rollback takes from verifying a
# version to creating its alias entry (two small reads and one write), so one that raced gc is seen.
SETTLE_SECONDS = 2.0


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


def collect(
    registry: Registry,
    policy: RegistryParams,
    dry_run: bool = True,
    now: datetime | None = None,
    settle_seconds: float = SETTLE_SECONDS,
) -> GcPlan:
    """Plan and, unless ``dry_run``, remove: the manifests of the versions that go first (so none is listed half
    removed, and from then on none can be verified, so none can be promoted or rolled back to), then — after
    ``settle_seconds`` and a fresh read of the alias history — their files. A version that became champion
    meanwhile (a rollback that had verified it just before its manifest went) gets its manifest back and keeps its
    files. A crash leaves incomplete uploads, which the next collection clears."""
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
    manifests_removed = {}
    for version in plan.versions:
        key = f"{prefix}{version}/{MANIFEST}"
        try:
            manifests_removed[version] = registry.storage.get(key)
        except ObjectNotFound:
            continue
        registry.storage.delete(key)
    if manifests_removed:  # a rollback or promotion that verified one of them before it went commits within this
        time.sleep(settle_seconds)
        named = {r.version: r.seq for r in registry.history()}
        for version in sorted(set(manifests_removed) & set(named)):
            registry.storage.put(f"{prefix}{version}/{MANIFEST}", manifests_removed[version], create_only=True)
            del plan.versions[version]
            plan.kept[version] = f"named by alias entry #{named[version]} while gc ran: its manifest was put back"
            log.warning("%s/%s became champion while gc ran: kept, manifest restored", registry.model, version)
    for version in [*plan.versions, *plan.incomplete]:
        mine = [k for k in keys if k.startswith(f"{prefix}{version}/")]
        for key in sorted(mine, key=lambda k: not k.endswith(f"/{MANIFEST}")):  # the manifest first
            registry.storage.delete(key)  # (already gone for a complete version: deleting it again is a no-op)
    return plan
