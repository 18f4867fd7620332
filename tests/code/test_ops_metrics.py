"""The metrics endpoint's promises without a Prefect server: a registry that cannot be read is a 0 in
``headstart_source_up`` and adds none of its metrics (not half of them); a port in use is an error naming it."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from flows.ops_metrics import HeadstartCollector, exposed_names, start_metrics_server
from headstart.ground.errors import ToolError
from headstart.ground.params import Params
from headstart.library.registry.registry import Registry
from headstart.library.storage.backends import LocalStorage
from tests.support.versions import FILES


def scraped(params: Params) -> dict[str, list]:
    """One scrape through prometheus-client's own exposition and parser: samples by metric name."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HeadstartCollector(params))
    families = text_string_to_metric_families(generate_latest(registry).decode())
    return {family.name: family.samples for family in families}


def test_a_registry_that_fails_halfway_adds_no_metrics_and_reports_itself_down(tmp_path: Path) -> None:
    registry = Registry(LocalStorage(tmp_path / "registry"), "demo")
    health = json.dumps({"drift": {"p_value": 0.2, "mmd2": 0.01}}).encode()
    version = registry.register({**FILES, "health.json": health}, {"metrics": {"accuracy": 0.8}, "decision": "PASS"})
    registry.set_champion(version, "promote", "first")
    params = Params.model_validate({"registry": {"uri": registry.storage.uri, "model_name": "demo"}})
    healthy = scraped(params)
    assert healthy["headstart_source_up"][0].value == 1.0 and healthy["headstart_last_drift_p_value"][0].value == 0.2
    assert healthy["headstart_champion_primary_metric"][0].value == 0.8

    # the newest version's health.json changed behind the registry's back: the read is refused after the champion
    # metrics were already produced, and none of them may reach the scrape
    registry.storage.put(f"demo/versions/{version}/health.json", b"tampered")
    broken = scraped(params)
    assert [s.value for s in broken["headstart_source_up"]] == [0.0]
    assert set(broken) == {"headstart_source_up"}, sorted(broken)


def test_a_metrics_port_in_use_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ToolError, match=f"cannot listen on 127.0.0.1:{port}"):
            start_metrics_server(Params(), port)


def promql_metric_names(expression: str) -> set[str]:
    """The headstart series a PromQL expression names."""
    return set(re.findall(r"\bheadstart_[a-z0-9_]+\b", expression))


def dashboard_expressions(dashboard: dict) -> list[str]:
    """Every query of a Grafana dashboard: its panels' targets and its template variables."""
    panels = [p for top in dashboard.get("panels", []) for p in [top, *top.get("panels", [])]]
    queries = [t.get("expr", "") for p in panels for t in p.get("targets", [])]
    variables = dashboard.get("templating", {}).get("list", [])
    return queries + [v["query"] if isinstance(v.get("query"), str) else v.get("query", {}).get("query", "")
                      for v in variables]  # fmt: skip


def test_the_dashboard_queries_only_series_the_collector_exports(tmp_path: Path) -> None:
    """A panel that queries a series the collector does not export shows nothing, silently: every name in the
    shipped dashboard must be one the collector describes, and what a scrape yields must be described."""
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "flows/ops_metrics.grafana.json").read_text())
    queried = set().union(*map(promql_metric_names, dashboard_expressions(dashboard)))
    assert len(queried) >= 6 and queried <= exposed_names(), sorted(queried - exposed_names())
    # the check fails for a dashboard that names a series that does not exist
    misspelt = json.loads(json.dumps(dashboard).replace("headstart_champion_age_seconds", "headstart_champion_age"))
    assert set().union(*map(promql_metric_names, dashboard_expressions(misspelt))) - exposed_names() == {
        "headstart_champion_age"
    }
    # and describe() does not lie: a healthy scrape yields only described series
    registry = Registry(LocalStorage(tmp_path / "registry"), "demo")
    health = json.dumps({"drift": {"p_value": 0.2, "mmd2": 0.01}}).encode()
    version = registry.register({**FILES, "health.json": health}, {"metrics": {"accuracy": 0.8}, "decision": "PASS"})
    registry.set_champion(version, "promote", "first")
    params = Params.model_validate({"registry": {"uri": registry.storage.uri, "model_name": "demo"}})
    samples = {sample.name for samples in scraped(params).values() for sample in samples}
    assert len(samples) >= 10 and samples <= exposed_names(), sorted(samples - exposed_names())


@pytest.mark.server
def test_a_scrape_answers_from_the_last_read_while_s3_hangs_and_counts_the_registry_down(
    seaweedfs, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The served endpoint reads the registry in the background: with S3 hanging (a request that never reaches
    the server), scrapes still answer at once from memory, and once the read has run past its timeout they say
    the registry is down, leave its metrics out and keep the time of the last good read."""
    import time
    import urllib.request

    from tests.support.faulty_proxy import S3FaultProxy
    from tests.support.seaweedfs import free_ports
    from tests.support.waiting import wait_for

    host, port = seaweedfs.endpoint.removeprefix("http://").split(":")
    proxy = S3FaultProxy((host, int(port)))
    proxy.serve()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)  # the product's registry client goes through it
    params = Params.model_validate({"registry": {"uri": f"s3://{bucket}/registry", "model_name": "demo"}})
    from headstart.library.registry.registry import open_registry

    registry = open_registry(params.registry)
    version = registry.register(FILES, {"metrics": {"accuracy": 0.8}, "decision": "PASS"})
    registry.set_champion(version, "promote", "first")
    [metrics_port] = free_ports(1)
    endpoint = start_metrics_server(params, metrics_port, refresh_seconds=0.2, read_timeout=1.0)

    def scrape() -> dict[str, list]:
        # the timeout is a hang guard, far above a scrape from memory (benchmarks/scrape.py measures it)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as answer:
            families = text_string_to_metric_families(answer.read().decode())
        return {family.name: family.samples for family in families}

    try:
        healthy = scrape()
        assert healthy["headstart_source_up"][0].value == 1.0 and healthy["headstart_registered_versions"][0].value == 1
        last_good = healthy["headstart_source_last_read_timestamp_seconds"][0].value
        proxy.arm(b"", "hold")  # the next S3 request never reaches the server: the background read waits on it
        down = wait_for(lambda: (s := scrape())["headstart_source_up"][0].value == 0.0 and s, 30, 0.2,
                        "the registry counted down")  # fmt: skip
        assert proxy.tripped.is_set()  # it was the hung request, not an error, that did it
        assert set(down) == {"headstart_source_up", "headstart_source_last_read_timestamp_seconds"}, sorted(down)
        last_read = down["headstart_source_last_read_timestamp_seconds"][0].value
        assert last_good <= last_read <= time.time()  # the last good read's time, kept
    finally:
        endpoint.shutdown()
        proxy.close()
