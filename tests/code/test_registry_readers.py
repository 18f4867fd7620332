"""Every reader of the version list sees only what a pull would accept (issue 27, items 1 and 2): in a registry
signed with a key, a version planted without the key, and a version whose MANIFEST.json is truncated, are left
out of `registry ls`, the overview, the metrics, gc's retention count and the watcher's record of what was
trained, and named; gc clears the truncated one as debris and keeps the planted one for a person to judge.
And gc never deletes a version that a concurrent rollback makes champion while it runs (item 3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from flows.ops_metrics import HeadstartCollector
from flows.watch import find_changes
from headstart.ground.params import Params, RegistryParams
from headstart.library.registry.gc import collect
from headstart.library.registry.registry import Registry, new_version_id, open_registry
from headstart.library.reports.overview import gather_overview
from tests.support.versions import FILES

KEY_ENV = "HS_READERS_KEY"
NEW_MD5 = "0123456789abcdef0123456789abcdef.dir"


@pytest.fixture(params=["local", "s3"])
def signed(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RegistryParams:
    monkeypatch.setenv(KEY_ENV, "the registry's key")
    uri = (
        f"file://{tmp_path / 'registry'}" if request.param == "local" else f"s3://{request.getfixturevalue('bucket')}/r"
    )
    return RegistryParams(uri=uri, model_name="demo", signing_key_env=KEY_ENV, keep_last=1)


def test_planted_and_damaged_versions_are_named_and_never_read_as_good(signed: RegistryParams, tmp_path: Path) -> None:
    registry = open_registry(signed)
    good = registry.register(FILES, {"dataset": "pets", "data_md5": "a" * 32 + ".dir", "decision": "PASS",
                                     "metrics": {"accuracy": 0.7}})  # fmt: skip
    registry.set_champion(good, "promote", "first")
    unsigned = Registry(registry.storage, "demo")  # someone with write access but not the key
    planted = unsigned.register(FILES, {"dataset": "pets", "data_md5": NEW_MD5, "decision": "PASS",
                                        "metrics": {"accuracy": 0.99}})  # fmt: skip
    damaged = new_version_id()
    registry.storage.put(f"demo/versions/{damaged}/model.safetensors", b"weights")
    registry.storage.put(f"demo/versions/{damaged}/MANIFEST.json", b'{"version": "trunc')

    scan = registry.scan_versions()
    assert [m["version"] for m in registry.versions()] == [good]
    assert set(scan.refused) == {planted, damaged} and scan.damaged == {damaged}
    assert "unsigned or wrongly signed" in scan.refused[planted] and "not a manifest" in scan.refused[damaged]

    # the overview and the metrics count the verified version alone
    assert [p.version for p in gather_overview(registry).versions] == [good]
    params = Params.model_validate({"registry": signed.model_dump()})
    metrics = CollectorRegistry(auto_describe=False)
    metrics.register(HeadstartCollector(params))
    samples = {f.name: f.samples for f in text_string_to_metric_families(generate_latest(metrics).decode())}
    assert samples["headstart_registered_versions"][0].value == 1
    assert samples["headstart_refused_versions"][0].value == 2
    assert [s.value for s in samples["headstart_source_up"] if s.labels["source"] == "registry"] == [1.0]

    # the watcher: the planted version's data_md5 was never trained, so that data version is still a change
    workspace = tmp_path / "ws"
    (workspace / "data").mkdir(parents=True)
    (workspace / "data" / "pets.dvc").write_text(f"outs:\n- md5: {NEW_MD5}\n  path: pets\n")
    [change] = find_changes(workspace, params.model_copy(update={"data": params.data.model_copy(
        update={"test_dir": None})}), registry)  # fmt: skip
    assert change.new_md5 == NEW_MD5 and change.old_md5 == "a" * 32 + ".dir"

    # gc (keep_last: 1): the planted version neither counts nor goes; the damaged one is debris once past the grace
    plan = collect(registry, signed, dry_run=False, now=datetime.now(UTC) + timedelta(days=2))
    assert damaged in plan.incomplete and planted in plan.kept and good in plan.kept and not plan.versions
    assert set(registry.scan_versions().refused) == {planted}
    assert not registry.storage.list(f"demo/versions/{damaged}/")
    assert json.loads(registry.storage.get(f"demo/versions/{planted}/MANIFEST.json"))["version"] == planted


class RollbackDuringDelete:
    """The registry's own storage, with a second writer: just before gc deletes ``manifest_key``, another registry
    on the same storage rolls the champion back to that version (it verifies the manifest, which is still there,
    and creates its alias entry) — the worst moment for gc."""

    def __init__(self, storage, manifest_key: str, version: str) -> None:
        self.inner, self.manifest_key, self.version, self.rolled_back = storage, manifest_key, version, False

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def delete(self, key: str) -> None:
        if key == self.manifest_key and not self.rolled_back:
            self.rolled_back = True
            Registry(self.inner, "demo").set_champion(self.version, "rollback", "rolled back while gc ran")
        self.inner.delete(key)


def test_gc_never_deletes_a_version_a_concurrent_rollback_just_restored(registry: Registry) -> None:
    old = registry.register(FILES, {"decision": "PASS"})
    registry.set_champion(old, "promote", "first")
    for _ in range(2):
        newer = registry.register(FILES, {"decision": "PASS"})
        registry.set_champion(newer, "promote", "better")
    stale = registry.register(FILES, {"decision": "PASS"})  # never champion: keep_last 1 removes it
    newest = registry.register(FILES, {"decision": "PASS"})
    racing = Registry(RollbackDuringDelete(registry.storage, f"demo/versions/{stale}/MANIFEST.json", stale), "demo")
    policy = RegistryParams(uri="file:///unused", model_name="demo", keep_last=1)
    plan = collect(racing, policy, dry_run=False, settle_seconds=0.1)
    assert racing.storage.rolled_back and registry.champion() == stale  # the race happened, the rollback landed
    assert stale not in plan.versions and "while gc ran" in plan.kept[stale]
    manifest, _, files = registry.fetch(stale)  # the champion is whole: verified, every file there
    assert set(files) == set(FILES) and manifest["version"] == stale
    assert newest in {m["version"] for m in registry.versions()}  # the rest of the plan went as planned
