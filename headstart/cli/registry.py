"""``headstart registry``: list, show, promote, roll back, pull, push and collect model versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from headstart.cli.options import ParamsOpt, SetOpt, settings
from headstart.cli.output import print_decision, text_console
from headstart.ground.run_folder import MODEL_CARD

console = text_console()
VerifyOpt = Annotated[
    bool, typer.Option("--verify", help="Re-hash every cached file (sizes and the manifest digest are always checked).")
]


def open_registry_of(params: Path, overrides: list[str] | None):
    """The registry the params (with ``--set``) name."""
    from headstart.library.registry.registry import open_registry

    return open_registry(settings(params, overrides).registry)


def ls(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document: every verified version.")] = False,
) -> None:
    """Complete versions, oldest first: id, created, data md5, metrics, decision, champion, manifest sha256."""
    registry = open_registry_of(params, set_)
    champion = registry.champion()
    scan = registry.scan_versions()
    rows = [
        {
            "id": m["version"],
            "created": m["created"],
            "data_md5": m.get("data_md5"),
            "metrics": m.get("metrics", {}),
            "decision": m.get("decision"),
            "champion": m["version"] == champion,
            "manifest_sha256": m["manifest_sha256"],
        }
        for m in scan.verified
    ]
    for version, reason in scan.refused.items():  # to stderr: --json stays the verified versions alone
        text_console(stderr=True).print(f"not listed: {version}: {reason}", style="yellow")
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("version", "created", "data md5", "accuracy", "macro-F1", "decision", "champion", "manifest")
    for r in rows:
        metrics = r["metrics"]
        table.add_row(
            r["id"],
            r["created"],
            str(r["data_md5"])[:12],
            f"{metrics.get('accuracy', 0):.4f}",
            f"{metrics.get('macro_f1', 0):.4f}",
            r["decision"],
            "*" if r["champion"] else "",
            r["manifest_sha256"][:12],
        )
    console.print(f"{registry.storage.uri}/{registry.model}")
    console.print(table)


def show(
    ref: Annotated[str, typer.Argument(help="A version id, or 'champion'.")],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The manifest, decision, reproductions (and champion history) as JSON.")
    ] = False,
    card: Annotated[
        bool, typer.Option("--card", help="Print the version's model card with its reproductions.")
    ] = False,
) -> None:
    """A version's manifest, decision and reproductions; for 'champion' also the alias history and lost promotion
    races."""
    from headstart.library.evaluation.gate import Decision
    from headstart.library.registry.reproductions import reproductions
    from headstart.library.reports.model_card import reproduction_markdown

    registry = open_registry_of(params, set_)
    version = registry.resolve(ref)
    if card:
        written = registry.read_file(version, MODEL_CARD)  # verified against the manifest
        text = written.decode() if written is not None else f"# {version}: registered without a model card\n"
        typer.echo(text + "\n" + reproduction_markdown(reproductions(registry, version)))
        return
    shown = {"manifest": registry.manifest(version), "decision": registry.decision(version),
             "reproductions": reproductions(registry, version)}  # fmt: skip
    if ref == "champion":
        shown["history"] = [r.__dict__ for r in registry.history()]
        shown["conflicts"] = registry.conflicts()
        shown["stray"] = registry.stray_aliases()
    if as_json:
        typer.echo(json.dumps(shown, indent=2))
        return
    console.print_json(json.dumps(shown["manifest"]))
    print_decision(Decision.from_dict(shown["decision"]).to_dict())  # a table in the terminal, not Markdown
    for record in shown["reproductions"]:
        console.print(f"reproduced on {record['at']}: {record['verdict']} ({record.get('mode')})")
    if "history" in shown:
        table = Table("seq", "version", "action", "at", "reason", title="champion history")
        for r in shown["history"]:
            table.add_row(str(r["seq"]), r["version"], r["action"], r["at"], r["reason"])
        console.print(table)
        for event in shown["conflicts"]:
            console.print(f"conflict: {event['attempt']} — {event['outcome']}")
        for key in shown["stray"]:
            console.print(Text.assemble(("not an alias entry, ignored: ", "yellow"), key))


def promote(
    version: Annotated[str, typer.Argument(help="The version to make champion.")],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option(help="Promote even though its gate decision was FAIL.")] = False,
) -> None:
    """Make a version champion by hand (refused for a FAIL decision unless --force; recorded either way)."""
    from headstart.library.registry.errors import RegistryError

    registry = open_registry_of(params, set_)
    verdict = registry.manifest(version).get("decision")
    if verdict != "PASS" and not force:
        raise RegistryError(f"{version}: its gate decision was {verdict}; pass --force to promote it anyway")
    reason = f"by hand (decision {verdict}{', forced' if force else ''})"
    record = registry.set_champion(version, "manual-promote", reason)
    console.print(f"champion #{record.seq}: {record.version}")


def rollback(
    to: Annotated[str | None, typer.Option("--to", help="Version to restore (default: the previous champion).")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Restore an earlier champion, as a new entry in the alias history."""
    record = open_registry_of(params, set_).rollback(to)
    console.print(f"champion #{record.seq}: {record.version} ({record.reason})")


def pull(
    ref: Annotated[str, typer.Argument(help="A version id, or 'champion'.")],
    dest: Annotated[Path, typer.Argument(help="Folder to write the verified files to.")],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Download a version, every file verified against its manifest (a mismatch is refused, naming the file)."""
    registry = open_registry_of(params, set_)
    version = registry.resolve(ref)
    console.print(f"{version} → {registry.pull(version, dest)}")


def push(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder (model, metrics, gate decision).")],
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Register a finished run (e.g. after a storage outage); promote it separately if its decision passed."""
    from headstart.ground.run_folder import RunFolder
    from headstart.library.registry.registration import register_run
    from headstart.library.registry.registry import open_registry

    policy = settings(params, set_).registry
    registry = open_registry(policy)
    version = register_run(registry, RunFolder(run_dir), grace_hours=policy.incomplete_grace_hours)
    verdict = registry.manifest(version)["decision"]
    hint = f"; promote it with `headstart registry promote {version}`" if verdict == "PASS" else ""
    console.print(f"registered {version} (decision {verdict}){hint}")


def gc(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="What was (or would be) removed and kept, as JSON.")] = False,
) -> None:
    """Remove uploads that never got a manifest and, per registry.keep_last / keep_failed_days, old versions —
    never the champion, never a version in the alias history, never an event."""
    from headstart.library.registry.gc import collect
    from headstart.library.registry.registry import open_registry

    policy = settings(params, set_).registry
    plan = collect(open_registry(policy), policy, dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps({"dry_run": dry_run, **plan.__dict__}, indent=2))
        return
    verb = "would remove" if dry_run else "removed"
    for version, why in {**plan.versions, **plan.incomplete}.items():
        console.print(f"{verb} {version}: {why}")
    for version, why in plan.kept.items():
        console.print(f"kept {version}: {why}", style="dim")
    if not (plan.versions or plan.incomplete):
        console.print("nothing to remove")
