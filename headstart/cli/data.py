"""Data commands: ``headstart data import`` (Fashion-MNIST, or any class-per-folder tree), ``data remote``,
``data pull`` (an exact version back, on any machine) and ``headstart validate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from headstart.cli.options import ParamsOpt, SetOpt, settings
from headstart.cli.output import print_report, text_console

console = text_console()
ENV_HINT = "endpoint and credentials from the environment (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"


def describe_remote(url: str) -> str:
    """One line: the remote, where its configuration lives and, for S3, where the endpoint and keys come from."""
    where = ".dvc/config.local, not committed"
    return f"DVC remote {url} ({where}; {ENV_HINT})" if url.startswith("s3://") else f"DVC remote {url} ({where})"


def _hint_commit(datasets: list[Path]) -> None:
    files = " ".join(f"{d}.dvc" for d in datasets)
    console.print(f"record this data version in git: git add {files} && git commit", style="dim")


def import_fashion_mnist(
    per_class: Annotated[int, typer.Option(min=1, help="Training-pool images per class.")] = 100,
    test_per_class: Annotated[int, typer.Option(min=0, help="Fixed evaluation images per class (0: none).")] = 0,
    name: Annotated[str, typer.Option(help="Dataset name: data/<name>/.")] = "fashion-mnist",
    seed: Annotated[int, typer.Option(help="Which images are drawn; a larger N keeps the smaller N's.")] = 0,
    data_root: Annotated[Path, typer.Option(help="Folder holding datasets.")] = Path("data"),
) -> None:
    """Fashion-MNIST from Debian's dataset-fashion-mnist package, as PNGs under DVC."""
    from headstart.ground.paths import cache_dir
    from headstart.library.data.fashion_mnist import export_split, locate_idx_dir
    from headstart.library.data.folder_import import check_dataset_name
    from headstart.library.data.versioning import track_and_push

    idx_dir = locate_idx_dir(cache_dir() / "debs")
    jobs = [("train", per_class, data_root / check_dataset_name(name))]
    if test_per_class:
        jobs.append(("test", test_per_class, data_root / f"{name}-test"))
    for split, count, dest in jobs:
        export_split(idx_dir, split, count, seed, dest)
        tracked = track_and_push(dest)
        console.print(Text.assemble((str(dest), "green"), f": {count} images x 10 classes from the official {split} "
                                    f"file; DVC md5 {tracked.md5}, pushed to {tracked.remote}"))  # fmt: skip
    _hint_commit([dest for _, _, dest in jobs])


def import_folder(
    src: Annotated[Path, typer.Argument(help="A class-per-folder image tree.")],
    name: Annotated[str, typer.Option(help="Dataset name: data/<name>/.")],
    data_root: Annotated[Path, typer.Option(help="Folder holding datasets.")] = Path("data"),
    replace: Annotated[
        bool, typer.Option(help="Replace an existing data/<name>/ (swapped in whole once the copy is complete).")
    ] = False,
) -> None:
    """Copy the regular files of a class-per-folder image tree into data/<name>/ and track it (hidden files
    skipped; links leaving the tree, FIFOs and devices skipped and named)."""
    from headstart.library.data.folder_import import check_dataset_name, copy_image_tree
    from headstart.library.data.versioning import track_and_push

    report = copy_image_tree(src, data_root / check_dataset_name(name), replace=replace)
    for path, why in report.skipped:
        console.print(Text.assemble(("skipped ", "yellow"), f"{src / path}: {why}"))
    tracked = track_and_push(report.dest)
    pushed = f": {report.copied} files, DVC md5 {tracked.md5}, pushed to {tracked.remote}"
    console.print(Text.assemble((str(report.dest), "green"), pushed))
    _hint_commit([report.dest])


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


def validate(
    directory: Annotated[Path, typer.Argument(help="Dataset folder (class-per-folder).")],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option(help="Where the manifest (CSV) and the report (JSON) go.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON report instead of a table.")] = False,
) -> None:
    """Build the manifest, decode every image, run the GX suite; exit 1 on any failure."""
    from headstart.library.data.validation import save_report, validate_dataset

    out = out or Path("runs") / "validate" / directory.name
    manifest, report = validate_dataset(directory, settings(params, set_).validate_)
    save_report(report, manifest, out)
    if as_json:
        typer.echo(report.to_json())
    else:
        print_report(report, out)
    raise typer.Exit(0 if report.success else 1)
