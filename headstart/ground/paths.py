"""Where headstart keeps machine-local state: outside the git tree, never at import time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO


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


def swap_folders(new: Path, old: Path) -> None:
    """Put ``new`` at ``old``'s name and ``old`` at ``new``'s, in one atomic step where the kernel offers it
    (Linux ``renameat2(RENAME_EXCHANGE)``): a crash leaves either the old or the new folder at ``old``'s name,
    never neither. Elsewhere two renames, with a moment in between when ``old``'s name is empty."""
    import ctypes
    import errno

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(new), at_fdcwd, os.fsencode(old), rename_exchange) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):  # anything but "not supported here" is a real failure
            raise OSError(code, os.strerror(code), str(old))
    parked = new.with_name(new.name + ".old")
    old.rename(parked)
    new.rename(old)
    parked.rename(new)


class NotRegularFile(Exception):
    """A FIFO, socket or device where a regular file was expected (never opened for reading)."""


def open_regular(path: Path, follow_last_link: bool = True) -> BinaryIO:
    """``path`` opened for reading, only when it is a regular file: checked by ``stat`` first (which opens
    nothing: a socket cannot be opened, a FIFO would block) and again on the descriptor (opened without blocking),
    so a file swapped for a FIFO in between is refused too. Raises NotRegularFile, or OSError when unreadable."""
    import stat

    if not stat.S_ISREG(os.stat(path, follow_symlinks=follow_last_link).st_mode):
        raise NotRegularFile(str(path))
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_last_link else os.O_NOFOLLOW)
    handle = os.fdopen(os.open(path, flags), "rb")
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise NotRegularFile(str(path))
    return handle
