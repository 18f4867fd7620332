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
