"""Operations: ``headstart serve`` (the Prefect server, deployments, workers, notifications and /metrics),
``headstart watch`` (a new data version becomes one event) and ``headstart report`` (the overview as static HTML)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from headstart.cli.options import ParamsOpt, SetOpt, settings
from headstart.cli.output import text_console

console = text_console()


def serve(
    port: Annotated[int, typer.Option(help="Port for the Prefect server it starts (127.0.0.1).")] = 4200,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus metrics on this port (/metrics); off when not given.")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address the metrics endpoint binds.")] = "127.0.0.1",
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Start a Prefect server (unless PREFECT_API_URL is set), the work pools, the deployments, the workers and,
    with a webhook URL configured, the notification automations; Ctrl-C (or SIGTERM) stops what it started."""
    import signal
    import threading

    from flows.notifications import block_name
    from flows.services import AUTH_FILE, start_services

    chosen = settings(params, set_)
    services = start_services(Path.cwd(), port, chosen.registry.model_name, chosen)
    console.print(f"Prefect UI: {services.ui_url}   API: {services.api_url}")
    if services.auth and (Path.cwd() / AUTH_FILE).is_file():
        console.print(
            f"the API asks for the auth string in {AUTH_FILE} (0600): the UI prompts for it; headstart commands run "
            f"here send it; for the prefect CLI: export PREFECT_API_URL={services.api_url} "
            f"PREFECT_API_AUTH_STRING=$(cat {AUTH_FILE})"
        )
    elif services.auth:
        console.print("the API asks for the auth string in $PREFECT_API_AUTH_STRING (the UI prompts for it)")
    console.print(f"deployments retrain/nightly, retrain/on-data-change, retrain/gpu run in {Path.cwd()}")
    console.print("headstart commands run in this workspace (watch, run, sweep) use this API while serve runs")
    for name in services.automations:
        console.print(f"automation: {name} (webhook block {block_name(chosen.registry.model_name)})")
    metrics = None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        if metrics_port is not None:
            from flows.ops_metrics import start_metrics_server

            metrics = start_metrics_server(chosen, metrics_port, metrics_host, services.api_url, services.auth)
            console.print(f"Prometheus metrics: http://{metrics_host}:{metrics_port}/metrics")
        console.print("logs: runs/serve/; stop with Ctrl-C")
        while not stop.wait(1.0) and all(p.poll() is None for p in services.processes):
            pass
    finally:
        if metrics is not None:
            metrics.shutdown()
        services.stop()
        console.print("stopped what serve started")


def watch(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per change.")] = False,
) -> None:
    """Compare each tracked dataset's DVC md5 with its latest registered version; emit one event per new change."""
    from flows.watch import watch as watch_data

    changes = watch_data(Path.cwd(), params, set_)
    for change in changes:
        if as_json:
            typer.echo(json.dumps(change))
        else:
            state = "event emitted" if change["emitted"] else "already emitted, skipped"
            if change["pending"]:
                state = ("sent but not confirmed by the server: pending, sent again by the next watch", "red")
            console.print(Text.assemble(f"{change['dataset']}: {change['old_md5']} → {change['new_md5']}: ", state))
    if not changes and not as_json:
        console.print("no data changes")
    if any(change["pending"] for change in changes):
        raise typer.Exit(1)  # a scheduled watch shows as failed until the server has every change


def report(
    out: Annotated[Path, typer.Option("--out", help="Folder for index.html and overview.json (created).")] = Path(
        "report"
    ),
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Write the `<model>-overview` page as self-contained HTML (charts inline) plus its data as JSON. Needs only
    the registry: outside a workspace, name it with `--set registry.uri=s3://BUCKET/PREFIX --set
    registry.model_name=NAME`."""
    from headstart.library.registry.registry import open_registry
    from headstart.library.reports.overview import gather_overview, overview_html, overview_markdown

    chosen = settings(params, set_)
    overview = gather_overview(open_registry(chosen.registry), chosen.gate.primary_metric)
    page = overview_html(overview_markdown(overview), f"{overview.model}: overview")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("index.html", page), ("overview.json", json.dumps(overview.to_dict(), indent=2))):
        partial = out / f".{name}.{os.getpid()}.partial"  # two reports at once never share a partial file
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, out / name)  # a reader sees the old page or the new one, never half
    console.print(f"{len(overview.versions)} versions, champion {overview.champion}: {out / 'index.html'}")
