"""Prometheus metrics for the ops stack (``headstart serve --metrics-port``), read from the registry and the
Prefect API with ``prometheus-client``'s custom-collector API: the served endpoint reads each source in the
background and answers scrapes from the last good read (:mod:`flows.metrics_cache`); a collector of its own
(tests, one-off scrapes) reads fresh on every scrape.

A scrape never fails because a source is down: ``headstart_source_up{source=...}`` says which one did not
answer, and that source's metrics are left out of the scrape.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from flows.metrics_cache import SourceCache
from flows.notifications import PIPELINE_FLOWS
from headstart.ground.errors import ToolError
from headstart.ground.params import Params
from headstart.ground.run_folder import HEALTH
from headstart.library.registry.registry import open_registry, registry_time

log = logging.getLogger(__name__)
STATE_TYPES = ("SCHEDULED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CRASHED", "CANCELLED")


# Every family a scrape may yield: (kind, help, labels). The collector builds its families from here and
# describe() lists them, so the dashboards and alert rules can be checked against what exists.
FAMILIES: dict[str, tuple[type[GaugeMetricFamily] | type[InfoMetricFamily], str, tuple[str, ...]]] = {
    "headstart_source_up": (GaugeMetricFamily, "Whether a source answered this scrape.", ("source",)),
    "headstart_registered_versions": (GaugeMetricFamily, "Complete, verified versions in the registry.", ("model",)),
    "headstart_refused_versions": (
        GaugeMetricFamily, "Versions whose manifest failed verification (not counted).", ("model",)
    ),
    "headstart_champion": (InfoMetricFamily, "The champion version.", ("model",)),
    "headstart_champion_primary_metric": (GaugeMetricFamily, "The champion's test score.", ("model", "metric")),
    "headstart_champion_age_seconds": (GaugeMetricFamily, "Since the champion alias last moved.", ("model",)),
    "headstart_last_retrain_timestamp_seconds": (
        GaugeMetricFamily, "When the newest version was registered.", ("model",)
    ),
    "headstart_last_retrain": (InfoMetricFamily, "The newest version's gate verdict.", ("model",)),
    "headstart_last_drift_p_value": (GaugeMetricFamily, "Drift test p-value of the newest version's data.", ("model",)),
    "headstart_last_drift_mmd2": (GaugeMetricFamily, "Drift MMD² of the newest version's data.", ("model",)),
    "headstart_flow_runs": (GaugeMetricFamily, "Pipeline flow runs by state.", ("flow", "state")),
    "headstart_source_last_read_timestamp_seconds": (
        GaugeMetricFamily, "When the served endpoint last read a source whole (its values are from then).",
        ("source",),
    ),
}  # fmt: skip


def family(name: str) -> Metric:
    """An empty family of :data:`FAMILIES`."""
    kind, documentation, labels = FAMILIES[name]
    return kind(name, documentation, labels=list(labels))


def exposed_names() -> set[str]:
    """The sample names a scrape can carry (an info family ``x`` is exposed as ``x_info``): what a PromQL
    expression may name."""
    return {name + ("_info" if kind is InfoMetricFamily else "") for name, (kind, _, _) in FAMILIES.items()}


def _seconds(iso: str) -> float:
    """Unix time of a time the registry wrote."""
    return registry_time(iso).timestamp()


class HeadstartCollector(Collector):
    """The champion, the last retrain, the last drift measurement and the pipeline's flow runs by state."""

    def __init__(self, params: Params, api_url: str | None = None, auth: str | None = None) -> None:
        # The Prefect API is named here, not taken from the settings: scrapes run in the HTTP server's threads,
        # which see neither the caller's temporary settings nor environment variables set after Prefect loaded.
        self.params = params
        self.api_url = api_url
        self.auth = auth
        self.caches: dict[str, SourceCache] = {}  # empty: each scrape reads the sources itself

    def read_in_background(self, every: float, timeout: float) -> None:
        """Read each source every ``every`` seconds on a thread of its own; scrapes then answer from the last
        good read in O(1), and a source whose read fails or runs past ``timeout`` counts as down (its metrics
        absent, its last good read's time still exported) until a read succeeds again."""
        readers = {"registry": lambda: list(self._registry_metrics())}
        if self.api_url:
            readers["prefect"] = lambda: [self._flow_runs()]
        self.caches = {name: SourceCache(name, read, every, timeout) for name, read in readers.items()}
        for cache in self.caches.values():
            cache.start(wait=timeout)

    def stop(self) -> None:
        """Stop the background reads."""
        for cache in self.caches.values():
            cache.stop()

    def describe(self) -> Iterator[Metric]:
        """Every family a scrape may yield, empty (prometheus-client's registry checks names with it)."""
        return (family(name) for name in FAMILIES)

    def collect(self) -> Iterator[Metric]:
        """One scrape: each source read once (or its last background read); a failing source is reported, not
        raised."""
        if self.caches:
            yield from self._cached()
            return
        up = family("headstart_source_up")
        try:
            yield from list(self._registry_metrics())  # all or nothing: a source failing halfway adds none
            up.add_metric(["registry"], 1)
        except Exception as exc:  # whatever went wrong, the ops stack sees the same 0 (and the log says what)
            log.warning("metrics: the registry did not answer: %s", exc)
            up.add_metric(["registry"], 0)
        if self.api_url:
            try:
                yield self._flow_runs()
                up.add_metric(["prefect"], 1)
            except Exception as exc:
                log.warning("metrics: the Prefect API did not answer: %s", exc)
                up.add_metric(["prefect"], 0)
        yield up

    def _cached(self) -> Iterator[Metric]:
        up, read_at = family("headstart_source_up"), family("headstart_source_last_read_timestamp_seconds")
        for name, cache in self.caches.items():
            metrics, at = cache.current()
            if metrics is not None:
                yield from metrics
            up.add_metric([name], 0 if metrics is None else 1)
            if at is not None:
                read_at.add_metric([name], at)
        yield up
        yield read_at

    def _registry_metrics(self) -> Iterator[Metric]:
        registry = open_registry(self.params.registry)
        model, metric = registry.model, self.params.gate.primary_metric
        scan, history = registry.scan_versions(), registry.history()
        versions = scan.verified
        yield _gauge("headstart_registered_versions", model, len(versions))
        yield _gauge("headstart_refused_versions", model, len(scan.refused))
        if history:
            current = history[-1]
            manifest = next((m for m in versions if m["version"] == current.version), {})
            info = family("headstart_champion")
            info.add_metric([model], {"version": current.version, "moved_by": current.action})
            yield info
            score = (manifest.get("metrics") or {}).get(metric)
            if score is not None:
                primary = family("headstart_champion_primary_metric")
                primary.add_metric([model, metric], score)
                yield primary
            age = datetime.now(UTC).timestamp() - _seconds(current.at)
            yield _gauge("headstart_champion_age_seconds", model, age)
        if versions:
            last = versions[-1]
            yield _gauge("headstart_last_retrain_timestamp_seconds", model, _seconds(last["created"]))
            verdict = family("headstart_last_retrain")
            verdict.add_metric([model], {"version": last["version"], "verdict": str(last.get("decision"))})
            yield verdict
            drift = (json.loads(registry.read_file(last["version"], HEALTH) or b"{}").get("drift")) or {}
            if drift.get("p_value") is not None:
                yield _gauge("headstart_last_drift_p_value", model, drift["p_value"])
                yield _gauge("headstart_last_drift_mmd2", model, drift["mmd2"])

    def _flow_runs(self) -> Metric:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            FlowFilter,
            FlowFilterName,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        runs = family("headstart_flow_runs")
        api = {PREFECT_API_URL: self.api_url, PREFECT_API_AUTH_STRING: self.auth}
        with temporary_settings(updates=api), get_client(sync_client=True) as client:
            for flow in PIPELINE_FLOWS:
                for state in STATE_TYPES:
                    of_state = FlowRunFilter(
                        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(state)]))
                    )
                    count = client.count_flow_runs(
                        flow_filter=FlowFilter(name=FlowFilterName(any_=[flow])), flow_run_filter=of_state
                    )
                    runs.add_metric([flow, state.lower()], count)
        return runs


def _gauge(name: str, model: str, value: float) -> Metric:
    gauge = family(name)
    gauge.add_metric([model], value)
    return gauge


def start_metrics_server(
    params: Params,
    port: int,
    host: str = "127.0.0.1",
    api_url: str | None = None,
    auth: str | None = None,
    refresh_seconds: float = 15.0,
    read_timeout: float = 10.0,
) -> MetricsEndpoint:
    """Serve ``/metrics`` on ``host:port`` in a background thread, each source read every ``refresh_seconds``
    in the background (a scrape never waits on S3 or the API; a read running past ``read_timeout`` counts the
    source down); returns the endpoint (``shutdown()`` stops it). Without ``api_url`` the flow-run counts are
    left out."""
    from prometheus_client import start_http_server

    collector = HeadstartCollector(params, api_url, auth)
    collector.read_in_background(refresh_seconds, read_timeout)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        collector.stop()
        raise ToolError(f"the metrics endpoint cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return MetricsEndpoint(server, collector)


class MetricsEndpoint:
    """A served ``/metrics``: ``shutdown()`` stops the HTTP server and the background reads."""

    def __init__(self, server, collector: HeadstartCollector) -> None:
        self.server, self.collector = server, collector

    def shutdown(self) -> None:
        """Stop serving and reading."""
        self.server.shutdown()
        self.collector.stop()
