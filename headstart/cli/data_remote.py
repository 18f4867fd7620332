"""``headstart data remote`` and ``headstart data pull``: where a workspace's datasets are stored, and getting
an exact version of them back (on another machine: clone the workspace, set the remote, pull)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from headstart.cli.output import text_console

console = text_console()
ENV_HINT = "endpoint and credentials from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"


def describe_remote(url: str) -> str:
    """One line: the remote, where its configuration lives and, for S3, where the endpoint and keys come from."""
    where = ".dvc/config.local, not committed"
    return f"DVC remote {url} ({where}; {ENV_HINT})" if url.startswith("s3://") else f"DVC remote {url} ({where})"


def remote(
    url: Annotated[
        str | None, typer.Argument(help="s3://BUCKET/PATH or a local folder; omitted: show the current remote.")
    ] = None,
) -> None:
    """Set (or show) the workspace's DVC remote: in .dvc/config.local only; S3 endpoint and credentials are read
    from the environment at push and pull time, never written."""
    from headstart.library.data.versioning import check_remote_url, configured_remote, find_repo_root, set_remote

    url = check_remote_url(url) if url is not None else None  # a wrong URL is named first, wherever this runs
    root = find_repo_root(Path.cwd())
    if url is None:
        current = configured_remote(root)
        console.print(describe_remote(current) if current else "no DVC remote configured; the first import sets one")
        return
    console.print(describe_remote(set_remote(root, url)))


def pull(
    datasets: Annotated[
        list[Path] | None, typer.Argument(help="Dataset folders or their .dvc files; omitted: every tracked one.")
    ] = None,
    lineage: Annotated[
        Path | None,
        typer.Option(
            help="A version's lineage.json (or a model's config.json): pull exactly the data versions it names."
        ),
    ] = None,
) -> None:
    """dvc pull the workspace's datasets, as its .dvc files name them, from the DVC remote; with --lineage, the
    exact data versions a model was trained and evaluated on (after `git checkout` of its workspace commit)."""
    from headstart.library.data.versioning import find_repo_root, pull_versions
    from headstart.library.data.versioning import pull as dvc_pull
    from headstart.library.lineage import data_versions, read_lineage

    root = find_repo_root(Path.cwd())
    if lineage is not None and datasets:
        raise typer.BadParameter("give dataset folders or --lineage, not both", param_hint="--lineage")
    if lineage is not None:
        record = read_lineage(lineage)
        pulled = pull_versions(root, data_versions(record), record.get("workspace_commit"))
    else:
        files = [d if d.suffix == ".dvc" else d.with_name(d.name + ".dvc") for d in datasets] if datasets else None
        pulled = dvc_pull(root, files)
    for tracked in pulled:
        console.print(
            Text.assemble((str(tracked.path), "green"), f": DVC md5 {tracked.md5}, pulled from {tracked.remote}")
        )
