"""A durable, create-only record of events already emitted (the data watcher's), kept on a Storage.

Prefect de-duplicates events in memory only; this ledger survives server restarts, so the same data change
never triggers twice. An event is recorded as sent only once the server confirmed it (readable there); until
then it is pending (``<scope>/events/pending/<id>.json``) and the next watch sends it again. It lives beside a
model's registry objects (``<scope>/events/emitted/<id>.json``) but is not part of the registry.
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

    def mark_pending(self, event_id: str, body: dict) -> None:
        """Record an event as sent but not yet confirmed by the server."""
        self.storage.put(f"{self.scope}/events/pending/{event_id}.json", json.dumps(body).encode())

    def clear_pending(self, event_id: str) -> None:
        """The server confirmed the event: it is no longer pending."""
        self.storage.delete(f"{self.scope}/events/pending/{event_id}.json")

    def pending(self) -> list[str]:
        """Event ids sent but never confirmed (the next watch sends them again while their change stands)."""
        prefix = f"{self.scope}/events/pending/"
        return sorted(k.removeprefix(prefix).removesuffix(".json") for k in self.storage.list(prefix))

    def recorded(self, event_id: str) -> bool:
        """Whether :meth:`record_once` has seen this event id."""
        return self.storage.exists(self._key(event_id))
