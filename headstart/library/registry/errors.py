"""What the registry refuses, in a module of its own: every registry module raises these and none imports another
for them (the registry and its pulling used to import each other)."""

from __future__ import annotations

from headstart.ground.errors import HeadstartError


class RegistryError(HeadstartError):
    """A registry operation was refused (unknown version, failed verification, no champion)."""


class DamagedManifest(RegistryError):
    """A version's MANIFEST.json cannot be read as a manifest (truncated, not JSON, wrong shape): debris."""


class PromotionConflict(RegistryError):
    """Another promotion took the same alias sequence number first; nothing was changed by this one."""
