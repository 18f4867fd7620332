"""A durable, create-only record of events already emitted (the data watcher's), kept on a Storage.

Prefect de-duplicates events in memory only; this ledger survives server restarts, so the same data change
never triggers twice. It lives beside a model's registry objects (``<scope>/events/emitted/<id>.json``) but is
not part of the registry.
"""

from __future__ import annotations

import json
import uuid

from headstart.library.storage.backends import ObjectExists, Storage


class EventLedger:
    """Which event ids have been emitted, under one scope (a model name)."""

    def __init__(self, storage: Storage, scope: str) -> None:
        self.storage, self.scope = storage, scope

    def _key(self, event_id: str) -> str:
        return f"{self.scope}/events/emitted/{event_id}.json"

    def record_once(self, event_id: str, body: dict) -> bool:
        """Record that an event was emitted; False when it already was (create-only, so racing watchers agree)."""
        # a nonce per writer: two watchers recording the same event write different bytes, so exactly one wins
        # (create-only treats a write of identical bytes as its own retry)
        record = {**body, "recorded_by": uuid.uuid4().hex}
        try:
            self.storage.put(self._key(event_id), json.dumps(record).encode(), create_only=True)
        except ObjectExists:
            return False
        return True

    def recorded(self, event_id: str) -> bool:
        """Whether :meth:`record_once` has seen this event id."""
        return self.storage.exists(self._key(event_id))
