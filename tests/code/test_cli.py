"""The command line's own edges: the version."""

from __future__ import annotations

import subprocess
from importlib.metadata import version


def test_version_prints_the_installed_distributions_version() -> None:
    done = subprocess.run(["headstart", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == f"headstart {version('headstart')}\n"
