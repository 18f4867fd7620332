"""What the registry promises under hostile storage and faults: nothing written outside a pull's folder, a
manifest replaced after promotion refused, no promotion past a champion it was not judged against, a retried
write that landed is not a conflict, a pull never destroys, local writes durable and readable, export atomic."""

from __future__ import annotations

import json
import os
import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from headstart.library.registry.errors import PromotionConflict, RegistryError
from headstart.library.registry.pulling import PULL_MARKER
from headstart.library.registry.registry import Registry
from headstart.library.storage.backends import LocalStorage, ObjectExists, S3Storage
from tests.support.versions import FILES


def rewrite_manifest(registry: Registry, version: str, change) -> None:
    """Replace a version's manifest behind the registry's back (as anyone with bucket access could)."""
    key = f"demo/versions/{version}/MANIFEST.json"
    manifest = json.loads(registry.storage.get(key))
    change(manifest)
    registry.storage.put(key, json.dumps(manifest).encode())


@pytest.mark.parametrize("hostile", ["../../escape.txt", "/tmp/escape-abs.txt", "sub/escape.txt", ".."])
def test_a_manifest_naming_paths_is_refused_and_nothing_is_written_outside(
    registry: Registry, tmp_path: Path, hostile: str
) -> None:
    version = registry.register(FILES, {})
    registry.storage.put(f"demo/versions/{version}/evil", b"owned")

    def add_hostile(manifest: dict) -> None:
        manifest["files"][hostile] = manifest["files"]["config.json"]

    rewrite_manifest(registry, version, add_hostile)
    assert not registry.versions() and version in registry.scan_versions().refused  # named, never listed as good
    cache = tmp_path / "cache" / "deep" / "models"
    before = set(tmp_path.rglob("*"))
    with pytest.raises(RegistryError, match=rf"demo/{version}: the manifest names .*not plain file names"):
        registry.pull(version, cache / version)
    assert set(tmp_path.rglob("*")) - before <= {tmp_path / "cache", tmp_path / "cache/deep", cache}
    assert not Path("/tmp/escape-abs.txt").exists()


def test_a_manifest_replaced_after_promotion_is_refused(registry: Registry, tmp_path: Path) -> None:
    version = registry.register(FILES, {"decision": "PASS"})
    record = registry.set_champion(version, "promote", "first")
    assert record.manifest_sha256 == registry.verified_manifest(version)[1]
    [listed] = registry.versions()
    assert listed["manifest_sha256"] == record.manifest_sha256  # what `registry ls` shows
    rewrite_manifest(registry, version, lambda m: m.update(decision="PASS", note="edited later"))
    with pytest.raises(RegistryError, match="differs from the one recorded when it was promoted"):
        registry.pull("champion", tmp_path / "pulled")
    assert not (tmp_path / "pulled").exists()


def test_pull_never_destroys_and_reverifies_a_cached_pull(registry: Registry, tmp_path: Path) -> None:
    v1, v2 = registry.register(FILES, {}), registry.register({**FILES, "model.safetensors": b"other"}, {})
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    with pytest.raises(RegistryError, match="is not an earlier pull"):
        registry.pull(v1, precious)
    assert [p.name for p in precious.iterdir()] == ["notes.txt"] and (precious / "notes.txt").read_text() == "mine"

    empty = tmp_path / "empty"
    empty.mkdir()
    pulled = registry.pull(v1, empty)  # an empty folder is fine
    again = registry.pull(v1, pulled)  # an earlier pull of the same version: re-verified, kept
    assert again == pulled and (pulled / "model.safetensors").read_bytes() == b"weights-bytes"
    with pytest.raises(RegistryError, match="is not an earlier pull"):
        registry.pull(v2, pulled)  # another version never replaces it
    (pulled / "model.safetensors").write_bytes(b"weights-bytez")  # same size: caught by the full check only
    registry.pull(v1, pulled, full_check=False)
    with pytest.raises(RegistryError, match=r"\['model.safetensors'\] no longer match"):
        registry.pull(v1, pulled)
    (pulled / "model.safetensors").write_bytes(b"short")
    with pytest.raises(RegistryError, match="size changed"):
        registry.pull(v1, pulled, full_check=False)
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def _pull_in_another_process(root: str, version: str, dest: str) -> list[str]:
    pulled = Registry(LocalStorage(Path(root)), "demo").pull(version, Path(dest))
    return sorted(p.name for p in pulled.iterdir())


def test_concurrent_pulls_from_separate_processes_end_with_one_complete_folder(tmp_path: Path) -> None:
    registry = Registry(LocalStorage(tmp_path / "registry"), "demo")
    version = registry.register(FILES, {})
    dest = tmp_path / "cache" / version
    with ProcessPoolExecutor(4) as pool:
        results = list(
            pool.map(_pull_in_another_process, [str(tmp_path / "registry")] * 8, [version] * 8, [str(dest)] * 8)
        )
    assert all(r == sorted([*FILES, PULL_MARKER]) for r in results)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [version]  # no staging folder left


def test_promotion_commits_exactly_the_entry_after_the_one_judged_against(registry: Registry) -> None:
    v1, v2, v3 = (registry.register(FILES, {}) for _ in range(3))
    registry.promote_after(v1, 0, "first")
    judged = registry.current_seq()  # the gate judges v2 against alias #1 ...
    registry.set_champion(v3, "manual-promote", "by hand, meanwhile")  # ... then someone promotes v3 (#2)
    with pytest.raises(PromotionConflict, match="#2 was taken"):
        registry.promote_after(v2, judged, "gate PASS against #1")
    assert [(r.seq, r.version) for r in registry.history()] == [(1, v1), (2, v3)]  # v3 stays: v2 never judged it
    [conflict] = registry.conflicts()
    assert conflict["attempt"]["version"] == v2 and conflict["attempt"]["judged_against_seq"] == 1
    # a retried promote whose first attempt landed returns that entry instead of conflicting with itself
    landed = registry.promote_after(v2, 2, "gate PASS against #2")
    assert registry.promote_after(v2, 2, "gate PASS against #2") == landed and registry.current_seq() == 3


def test_create_only_with_our_own_bytes_is_success_and_with_other_bytes_a_conflict(registry: Registry) -> None:
    registry.storage.put("demo/x.json", b"ours", create_only=True)
    registry.storage.put("demo/x.json", b"ours", create_only=True)  # a retry of a write that landed
    with pytest.raises(ObjectExists):
        registry.storage.put("demo/x.json", b"theirs", create_only=True)
    assert registry.storage.get("demo/x.json") == b"ours"


def test_a_retried_promotion_whose_answer_was_lost_is_not_a_conflict(seaweedfs, bucket: str) -> None:
    """The alias PUT reaches SeaweedFS and lands; its answer is lost on the way back; botocore retries, gets 412
    on an object holding exactly its bytes: success, one entry, no conflict, no second version."""
    from tests.support.faulty_proxy import S3FaultProxy

    host, port = seaweedfs.endpoint.removeprefix("http://").split(":")
    proxy = S3FaultProxy((host, int(port)))
    proxy.serve()
    try:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=proxy.endpoint,
            config=Config(
                retries={"max_attempts": 4, "mode": "standard"}, read_timeout=5, s3={"addressing_style": "path"}
            ),
        )
        registry = Registry(S3Storage(bucket, "registry", client=client), "demo")
        proxy.arm(b"/demo/versions/")
        version = registry.register(FILES, {})  # the first file's answer is lost
        assert proxy.swallowed == 1
        proxy.arm(b"aliases/champion/00000001.json")
        record = registry.promote_after(version, 0, "first")
        assert proxy.swallowed == 2
    finally:
        proxy.close()
    assert [m["version"] for m in registry.versions()] == [version]
    assert registry.history() == [record] and registry.conflicts() == []


def test_local_writes_are_readable_per_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        storage = LocalStorage(tmp_path / "registry")
        storage.put("demo/a.json", b"{}", create_only=True)
        storage.put("demo/b.json", b"{}")
    finally:
        os.umask(old)
    for name in ("a.json", "b.json"):
        assert stat.S_IMODE((tmp_path / "registry/demo" / name).stat().st_mode) == 0o644
    assert not [p for p in (tmp_path / "registry/demo").iterdir() if p.name.startswith(".tmp-")]


def _promote_in_another_process(backend: str, where: str, version: str) -> str:
    storage = LocalStorage(Path(where)) if backend == "local" else S3Storage(where, "registry")
    try:
        Registry(storage, "demo").promote_after(version, 0, "race")
    except PromotionConflict:
        return "lost"
    return "won"


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_promotions_racing_from_four_processes_have_one_winner(backend: str, request, tmp_path: Path) -> None:
    where = str(tmp_path / "registry") if backend == "local" else request.getfixturevalue("bucket")
    storage = LocalStorage(Path(where)) if backend == "local" else S3Storage(where, "registry")
    registry = Registry(storage, "demo")
    versions = [registry.register({**FILES, "model.safetensors": bytes([n])}, {}) for n in range(4)]
    with ProcessPoolExecutor(4) as pool:
        outcomes = list(pool.map(_promote_in_another_process, [backend] * 4, [where] * 4, versions))
    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]
    [entry] = registry.history()
    assert entry.version == versions[outcomes.index("won")] and len(registry.conflicts()) == 3


def test_stray_objects_under_aliases_are_reported_and_damaged_entries_refused(registry: Registry) -> None:
    version = registry.register(FILES, {})
    registry.promote_after(version, 0, "first")
    registry.storage.put("demo/aliases/champion/notes.txt", b"left here by hand")
    entry = registry.storage.get("demo/aliases/champion/00000001.json")
    registry.storage.put("demo/aliases/champion/old/00000001.json", entry)  # a copy in a sub-folder
    assert registry.champion() == version and [r.seq for r in registry.history()] == [1]
    assert registry.stray_aliases() == ["demo/aliases/champion/notes.txt", "demo/aliases/champion/old/00000001.json"]
    # an object named as an entry but not one is damage: refused loudly, never skipped into another champion
    registry.storage.put("demo/aliases/champion/00000002.json", entry)  # says #1
    with pytest.raises(RegistryError, match=r"00000002.json: not a valid alias entry \(it says entry #1"):
        registry.champion()


def test_a_signing_registry_refuses_unsigned_and_wrongly_signed_entries(
    registry: Registry, tmp_path: Path, monkeypatch
) -> None:
    from headstart.ground.errors import ConfigError
    from headstart.ground.params import RegistryParams
    from headstart.library.registry.registry import open_registry

    signed = Registry(registry.storage, "demo", signing_key=b"the key")
    version = signed.register(FILES, {})
    signed.promote_after(version, 0, "first")
    assert signed.champion() == version and signed.pull(version, tmp_path / "ok").is_dir()

    forger = Registry(registry.storage, "demo")  # bucket access, no key: writes unsigned objects
    forged = forger.register(FILES, {})
    with pytest.raises(RegistryError, match="unsigned or wrongly signed"):
        signed.pull(forged, tmp_path / "forged")
    forger.promote_after(forged, 1, "forged")
    assert forger.champion() == forged  # without the key nothing is checked; with it, the forged entry is damage:
    with pytest.raises(RegistryError, match=r"00000002.json: not a valid alias entry \(unsigned or wrongly signed"):
        signed.champion()  # nothing is promoted or pulled on that history until it is repaired
    with pytest.raises(RegistryError, match="damaged"):
        signed.pull("champion", tmp_path / "forged")
    with pytest.raises(RegistryError, match="unsigned or wrongly signed"):
        Registry(registry.storage, "demo", signing_key=b"another key").pull(version, tmp_path / "wrong")
    assert not (tmp_path / "forged").exists() and not (tmp_path / "wrong").exists()

    params = RegistryParams(uri=f"file://{tmp_path / 'r2'}", model_name="demo", signing_key_env="HS_TEST_KEY")
    monkeypatch.delenv("HS_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match="HS_TEST_KEY, which is not set"):
        open_registry(params)
    monkeypatch.setenv("HS_TEST_KEY", "from the environment")
    assert open_registry(params).signing_key == b"from the environment"


def test_a_manifest_copied_from_another_model_or_version_is_refused(registry: Registry, tmp_path: Path) -> None:
    theirs = Registry(registry.storage, "other").register(FILES, {})
    ours = registry.register(FILES, {})
    for name in [*FILES, "MANIFEST.json"]:  # their version's objects copied over ours
        registry.storage.put(f"demo/versions/{ours}/{name}", registry.storage.get(f"other/versions/{theirs}/{name}"))
    with pytest.raises(RegistryError, match=f"describes other/{theirs}; refused"):
        registry.pull(ours, tmp_path / "pulled")


def test_gc_removes_debris_and_old_versions_but_never_the_champion_or_history(
    registry: Registry, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from headstart.ground.params import RegistryParams
    from headstart.library.registry.gc import collect

    old_champion, champion = registry.register(FILES, {"decision": "PASS"}), registry.register(FILES, {})
    failed = [registry.register(FILES, {"decision": "FAIL"}) for _ in range(2)]
    newest = registry.register(FILES, {"decision": "PASS"})
    registry.promote_after(old_champion, 0, "first")
    registry.promote_after(champion, 1, "second")
    registry.storage.put("demo/versions/20200101T000000000000Z-0badc0de/model.safetensors", b"crashed upload")
    registry.storage.put("demo/events/emitted/e.json", b"{}")
    later = datetime.now(UTC) + timedelta(days=40)
    policy = RegistryParams(keep_failed_days=30, incomplete_grace_hours=24)

    planned = collect(registry, policy, dry_run=True, now=later)
    assert sorted(planned.versions) == sorted(failed) and list(planned.incomplete) == [
        "20200101T000000000000Z-0badc0de"
    ]
    assert len(registry.versions()) == 5  # a dry run removes nothing

    collect(registry, policy, dry_run=False, now=later)
    assert [m["version"] for m in registry.versions()] == [old_champion, champion, newest]
    assert registry.storage.list("demo/versions/20200101T000000000000Z-0badc0de/") == []
    assert all(registry.storage.list(f"demo/versions/{v}/") == [] for v in failed)
    assert registry.champion() == champion and registry.storage.exists("demo/events/emitted/e.json")
    assert registry.pull(old_champion, tmp_path / "old-champion").is_dir()  # history keeps it whole

    kept_last = collect(registry, RegistryParams(keep_last=1), dry_run=False, now=later)
    assert kept_last.versions == {}  # the two older ones are in the alias history: kept whatever the policy
    assert set(kept_last.kept) == {old_champion, champion}


def test_gc_command_dry_run_lists_and_keeps(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from headstart.cli.main import app
    from headstart.ground.params import Params

    registry = Registry(LocalStorage(tmp_path / "registry"), "demo")
    registry.storage.put("demo/versions/20200101T000000000000Z-0badc0de/model.safetensors", b"crashed upload")
    raw = Params().as_dict()
    raw["registry"].update(uri=f"file://{tmp_path / 'registry'}", model_name="demo")
    (tmp_path / "params.yaml").write_text(json.dumps(raw))
    args = ["registry", "gc", "--dry-run", "--json", "--params", str(tmp_path / "params.yaml")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["incomplete"] == {"20200101T000000000000Z-0badc0de": "no manifest after 24 h"}
    assert registry.storage.exists("demo/versions/20200101T000000000000Z-0badc0de/model.safetensors")


def test_two_watchers_recording_the_same_event_agree_on_one_first(registry: Registry) -> None:
    """The same body from two watchers must not look like one writer's retry: exactly one records it."""
    from headstart.library.storage.event_ledger import EventLedger

    body = {"event": "headstart.dataset.changed", "dataset": "d", "new_md5": "m.dir"}
    first, second = EventLedger(registry.storage, "demo"), EventLedger(registry.storage, "demo")
    assert [first.record_once("e1", body), second.record_once("e1", body)] == [True, False]
    assert first.recorded("e1") and second.recorded("e1")


def test_a_version_planned_long_ago_is_registered_afresh_and_a_recent_one_completed(
    registry: Registry, tmp_path: Path
) -> None:
    """An id chosen more than half of registry.incomplete_grace_hours ago may be losing its upload to gc (which
    judges an upload by its id's time): the run registers a new version instead of completing that one."""
    from headstart.ground.run_folder import RunFolder
    from headstart.library.registry.registration import register_run

    run = RunFolder(tmp_path / "run")
    run.model.mkdir(parents=True)
    (run.model / "config.json").write_text(json.dumps({"lineage": {"dataset": "d", "data_md5": "m"}}))
    (run.model / "model.safetensors").write_bytes(b"weights")
    run.metrics.write_text(json.dumps({"accuracy": 0.9, "macro_f1": 0.9}))
    run.decision.write_text(json.dumps({"verdict": "PASS"}))
    old = "20200101T000000000000Z-0123abcd"
    registry.storage.put(f"demo/versions/{old}/model.safetensors", b"weights", create_only=True)  # begun then
    run.registering.write_text(json.dumps({"version": old, "resume_key": None}))

    version = register_run(registry, run, grace_hours=24)
    assert version != old and [m["version"] for m in registry.versions()] == [version]
    assert json.loads(run.registering.read_text())["version"] == version
    assert register_run(registry, run, grace_hours=24) == version  # a recent plan is completed, never doubled
    assert [m["version"] for m in registry.versions()] == [version]
