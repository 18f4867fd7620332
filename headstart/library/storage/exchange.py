"""A run's files exchanged through object storage, between machines that share no file system.

A sweep's coordinator hands its workers the prepared data steps' files this way, and each worker hands back its
trial's model and records: a folder is a :class:`LocalStorage`, mirrored object by object under one key prefix
(``<model>/runs/<run id>/...`` of the registry's bucket). Only relative names travel, so nothing one machine
writes names a path of another; a name that would leave the folder it is written into is refused.
"""

from __future__ import annotations

from collections.abc import Callable

from headstart.library.storage.backends import Storage


def copy_objects(
    source: Storage,
    source_prefix: str,
    target: Storage,
    target_prefix: str = "",
    keep: Callable[[str], bool] = lambda name: True,
) -> list[str]:
    """Every object under ``source_prefix/`` (everything when it is empty) whose relative name ``keep`` accepts,
    written to ``target_prefix/<name>``; the names copied, in order. Each object arrives whole or not at all (an
    S3 put is atomic; a folder writes a temporary file and renames it), so the caller writes the object that
    says "complete" last, or hands the names over only after this returns."""
    start = len(_under(source_prefix, ""))
    names = [key[start:] for key in source.list(_under(source_prefix, ""))]
    copied = [name for name in names if name and not name.endswith("/") and keep(name)]  # not folder markers
    for name in copied:
        target.put(_under(target_prefix, name), source.get(_under(source_prefix, name)))
    return copied


def _under(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name
