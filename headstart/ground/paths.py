"""Where headstart keeps machine-local state: outside the git tree, never at import time."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$HEADSTART_CACHE``, else ``$XDG_CACHE_HOME/headstart``, else ``~/.cache/headstart``."""
    if explicit := os.environ.get("HEADSTART_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "headstart"


def default_dvc_remote() -> Path:
    """The local-directory DVC remote used when a repository has none configured."""
    return cache_dir() / "dvc-remote"


def inside(root: Path, path: Path | str, what: str) -> Path:
    """``path`` (relative to ``root``, or absolute) when it resolves inside ``root``; else a ConfigError naming
    ``what`` — parameters that arrive from outside (a deployment run, an event) never reach other folders."""
    from headstart.ground.errors import ConfigError

    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise ConfigError(f"{what} {str(path)!r} resolves to {resolved}, outside the workspace {root.resolve()}")
    return resolved
