"""One retrain per model at a time: a Prefect global concurrency limit, created on demand, used strictly."""

from __future__ import annotations

from contextlib import AbstractContextManager, suppress

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound


def limit_name(model_name: str) -> str:
    """The global concurrency limit guarding a model's retrains."""
    return f"retrain-{model_name}"


def ensure_limit(name: str, limit: int = 1) -> None:
    """Create the limit if it does not exist: with ``strict=True`` a missing limit is an error, and without it
    Prefect silently runs unguarded."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another run created it first
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=limit))


# The slot is a lease the holder renews while alive. A crashed run (a killed process) cannot release it, so the
# server reclaims it when the lease lapses: the shortest lease Prefect allows keeps a retry's wait to about a
# minute (plus the server's repossessor loop).
SLOT_LEASE_SECONDS = 60


def retrain_slot(model_name: str) -> AbstractContextManager[None]:
    """Hold the model's single retrain slot for the duration of a ``with`` block (waits while another holds it)."""
    name = limit_name(model_name)
    ensure_limit(name)
    return concurrency(name, occupy=1, strict=True, lease_duration=SLOT_LEASE_SECONDS)
