"""A hostile-registry fuzz (issue 27): each kind of registry object — a manifest, an alias entry, a decision, a
health report, a reproduction record — replaced by each kind of damage (empty, truncated, random bytes, other JSON
types, unsigned, signed with another key, naming another version, huge), on a local folder and on SeaweedFS. Every
reader — the version list, the history, the overview, the metrics scrape, gc's plan, the watcher, reproductions —
either goes on and leaves the bad object out (naming it), or refuses with one RegistryError; none raises anything
else, and none shows the bad object as good."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from flows.ops_metrics import HeadstartCollector
from flows.watch import find_changes
from headstart.ground.errors import HeadstartError
from headstart.ground.params import Params
from headstart.library.registry.gc import collect
from headstart.library.registry.registry import Registry
from headstart.library.registry.reproductions import record_reproduction, reproductions
from headstart.library.registry.signing import sign
from headstart.library.reports.overview import gather_overview, overview_markdown
from headstart.library.storage.backends import LocalStorage, S3Storage
from tests.support.versions import FILES

KEY, OTHER_KEY, KEY_ENV = b"the registry's key", b"someone else's key", "HS_FUZZ_KEY"
DATA_MD5 = "0123456789abcdef0123456789abcdef.dir"


def variants(good: dict, other_version: str) -> dict[str, bytes]:
    """The damage done to one JSON object whose sound form is ``good``."""
    unsigned = {k: v for k, v in good.items() if k != "signature"}
    text = json.dumps(good).encode()
    return {
        "empty": b"",
        "truncated": text[: len(text) // 2],
        "random bytes": os.urandom(200),
        "a list": json.dumps([good]).encode(),
        "wrong types": json.dumps({k: [v] if not isinstance(v, list) else {"x": v} for k, v in good.items()}).encode(),
        "unsigned": json.dumps(unsigned).encode(),
        "another key": json.dumps({**unsigned, "signature": sign(unsigned, OTHER_KEY)}).encode(),
        "another version": json.dumps(_resigned({**unsigned, "version": other_version})).encode(),
        "huge": json.dumps({**good, "padding": "x" * 3_000_000}).encode(),
    }


def _resigned(entry: dict) -> dict:
    return {**entry, "signature": sign(entry, KEY)}


def readers(registry: Registry, params: Params, workspace: Path, v1: str) -> dict[str, Callable[[], object]]:
    """Every reader of the registry, each returning what it shows."""

    def scrape() -> dict:
        metrics = CollectorRegistry(auto_describe=False)
        metrics.register(HeadstartCollector(params))
        return {f.name: f.samples for f in text_string_to_metric_families(generate_latest(metrics).decode())}

    return {
        "versions": lambda: [m["version"] for m in registry.versions()],
        "history": registry.history,
        "overview": lambda: overview_markdown(gather_overview(registry)),
        "metrics": scrape,
        "gc plan": lambda: collect(registry, params.registry, dry_run=True),
        "watcher": lambda: find_changes(workspace, params, registry),
        "reproductions": lambda: reproductions(registry, v1),
    }


def make_signed(backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A signed registry on ``backend``: a champion v1, a newer v2 with its own health, and a reproduction record
    of v1; a workspace whose dataset is the one both trained on."""
    monkeypatch.setenv(KEY_ENV, KEY.decode())
    if backend == "local":
        storage = LocalStorage(tmp_path / "registry")
    else:
        storage = S3Storage(request.getfixturevalue("bucket"), "registry")
    signed = Registry(storage, "demo", KEY)
    health = json.dumps({"drift": {"p_value": 0.5, "mmd2": 0.01}, "label_issues": {"fraction": 0.1}}).encode()
    summary = {"dataset": "pets", "data_md5": DATA_MD5, "decision": "PASS", "metrics": {"accuracy": 0.8}}
    v1 = signed.register({**FILES, "health.json": health}, summary)
    signed.set_champion(v1, "promote", "first")
    v2 = signed.register({**FILES, "health.json": health}, summary)
    record_reproduction(signed, v1, {"at": "2026-12-03T00:00:00+00:00", "verdict": "identical", "mode": "bitwise"})
    workspace = tmp_path / "ws"
    (workspace / "data").mkdir(parents=True)
    (workspace / "data" / "pets.dvc").write_text(f"outs:\n- md5: {DATA_MD5}\n  path: pets\n")
    params = Params.model_validate(
        {"data": {"test_dir": None},
         "registry": {"uri": signed.storage.uri, "model_name": "demo", "signing_key_env": KEY_ENV}}
    )  # fmt: skip
    return signed, v1, v2, params, workspace


def _key_of(kind: str, registry: Registry, v1: str, v2: str) -> str:
    folder = f"demo/versions/{v2}/"
    return {
        "manifest": folder + "MANIFEST.json",
        "decision": folder + "decision.json",
        "health": folder + "health.json",
        "alias entry": "demo/aliases/champion/00000002.json",
        "reproduction": next(iter(registry.storage.list(f"demo/reproductions/{v1}/")), ""),
    }[kind]


@pytest.mark.parametrize(
    "kind, backend",
    [(kind, "local") for kind in ("manifest", "alias entry", "decision", "health", "reproduction")]
    + [("manifest", "s3"), ("alias entry", "s3")],  # the damage a reader meets first, on SeaweedFS too
)
def test_every_reader_survives_every_damage_and_never_shows_it_as_good(
    kind: str, backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, v1, v2, params, workspace = make_signed(backend, request, tmp_path, monkeypatch)
    key = _key_of(kind, registry, v1, v2)
    original = registry.storage.get(key) if registry.storage.exists(key) else None
    sound = json.loads(original) if original is not None else None
    good = sound or _resigned({"seq": 2, "version": v2, "action": "promote", "at": "2026-12-03T00:00:00+00:00",
                               "reason": "planted", "manifest_sha256": None, "judged_against_seq": 1})  # fmt: skip
    for variant, data in variants(good, v2 if kind == "reproduction" else v1).items():
        if registry.storage.exists(key):
            registry.storage.delete(key)
        registry.storage.put(key, data)
        shown: dict[str, object] = {}
        for reader, read in readers(registry, params, workspace, v1).items():
            try:
                shown[reader] = read()
            except HeadstartError as refused:  # one clear refusal is allowed: a damaged history must stop use
                shown[reader] = refused
            except Exception as exc:  # anything else is the defect this test hunts
                pytest.fail(f"{kind} / {variant}: {reader} raised {type(exc).__name__}: {exc}")
        history = shown["history"]
        if kind == "alias entry":
            assert isinstance(history, HeadstartError), (variant, history)  # damaged history: refused everywhere
            continue
        assert not isinstance(history, HeadstartError) and [r.version for r in history] == [v1], (variant, history)
        listed = shown["versions"]
        if kind == "manifest":
            assert listed == [v1], (variant, listed)  # the damaged version is never listed as good
            assert v2 not in shown["overview"], variant
        else:
            assert listed == [v1, v2], (variant, listed)
        if kind in ("decision", "health") and data != original:  # not what the manifest says: not readable
            assert "decision not readable" in shown["overview"], variant
        metrics = shown["metrics"]
        assert metrics["headstart_source_up"] and all(s.value in (0.0, 1.0) for s in metrics["headstart_source_up"])
        if kind == "reproduction":
            assert shown["reproductions"] == [], variant  # a damaged record is not shown
        assert shown["watcher"] == [], variant  # the verified v1 trained the workspace's data: nothing to announce
