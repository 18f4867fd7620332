"""A workspace: a git + DVC repository holding datasets, params.yaml and runs (what the demo and tests use)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from headstart.ground.errors import ToolError
from headstart.ground.params import Params
from headstart.library.data.versioning import check_remote_url, dvc_init, ensure_default_remote, set_remote

PROJECT_ROOT = Path(__file__).resolve().parents[3]  # the checkout (or the installed package's parent)
WORKSPACE_GITIGNORE = """\
# Run outputs are reproducible from data + params; the local registry is storage, not source.
/runs/
/registry/
/.prefect/
"""


def git(cwd: Path, *args: str) -> str:
    """Run git, returning stdout; a failure is a ToolError carrying git's message."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    except FileNotFoundError:
        raise ToolError("git not found: install git to version datasets") from None
    except subprocess.CalledProcessError as exc:
        raise ToolError(f"git {' '.join(args)} failed in {cwd}: {exc.stderr.strip()}") from None
    return done.stdout


def commit(cwd: Path, message: str, paths: list[str]) -> None:
    """Stage ``paths`` and commit them when anything changed."""
    git(cwd, "add", "--", *paths)
    if git(cwd, "status", "--porcelain", "--", *paths).strip():
        git(cwd, "commit", "-q", "-m", message, "--", *paths)


def ensure_identity(cwd: Path) -> None:
    """Give the repository a local committer identity where git has none (fresh CI machines)."""
    try:
        if git(cwd, "config", "user.email").strip():
            return
    except ToolError:  # `git config` exits 1 when the key is unset
        pass
    git(cwd, "config", "user.name", "headstart")
    git(cwd, "config", "user.email", "headstart@localhost")


def init_workspace(root: Path, params_template: Path | None = None, remote: str | None = None) -> Path:
    """Create (or complete) a workspace at ``root``: git init, dvc init, params.yaml, a default DVC remote.

    Idempotent: existing repositories and an existing params.yaml are kept. ``remote`` (``s3://BUCKET/PATH`` or a
    local folder, checked before anything is created) replaces the default remote, in ``.dvc/config.local`` only.
    """

    if remote is not None:
        remote = check_remote_url(remote)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / ".git").exists():
        git(root, "init", "-q")
    ensure_identity(root)
    if not (root / ".dvc").exists():
        dvc_init(root)
    template = params_template or PROJECT_ROOT / "params.yaml"
    if not (root / "params.yaml").exists():
        if template.is_file():
            shutil.copy(template, root / "params.yaml")
        elif params_template is None:  # an installed package without the commented file: the same defaults
            (root / "params.yaml").write_text(yaml.safe_dump(Params().as_dict(), sort_keys=False))
        else:
            raise ToolError(f"{template}: params template not found; `headstart init DIR --params-template FILE`")
    if not (root / ".gitignore").exists():
        (root / ".gitignore").write_text(WORKSPACE_GITIGNORE)
    if remote is not None:
        set_remote(root, remote)
    else:
        ensure_default_remote(root)
    commit(root, "headstart workspace", [".dvc", ".dvcignore", ".gitignore", "params.yaml"])
    return root


def set_params_keys(workspace: Path, values: dict[str, object]) -> None:
    """Write dotted keys (``data.dir``) into the workspace's params.yaml in place, its comments kept, and check the
    result is valid params before it replaces the file."""
    import io

    from ruamel.yaml import YAML

    from headstart.ground.params import load_params

    yaml = YAML()  # round-trip: the shipped comments stay beside each key
    path = workspace / "params.yaml"
    doc = yaml.load(path.read_text())
    for dotted, value in values.items():
        *sections, key = dotted.split(".")
        node = doc
        for section in sections:
            node = node[section]
        node[key] = value
    text = io.StringIO()
    yaml.dump(doc, text)
    staged = path.with_name(".params.yaml.partial")
    staged.write_text(text.getvalue())
    try:
        load_params(staged)  # a value the params refuse is named now, and params.yaml stays as it was
    except Exception:
        staged.unlink()
        raise
    staged.replace(path)
