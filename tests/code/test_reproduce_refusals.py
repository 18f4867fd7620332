"""`headstart reproduce` reads a record someone else wrote: a hostile or damaged one (in an unsigned registry anyone
with write access can plant it) is refused with its reason before anything is fetched or written, never a
traceback, never a folder outside the scratch one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.reproduce import NotReproducible, reproduce
from headstart.ground.params import Params
from headstart.library.registry.registry import Registry
from headstart.library.storage.backends import LocalStorage
from tasks.pipeline import REBUILT_STEPS, steps_by_name
from tasks.step import code_fingerprint

MD5 = "0123456789abcdef0123456789abcdef.dir"


def sound_lineage() -> dict:
    steps = steps_by_name()
    return {
        "data_md5": MD5,
        "test_data_md5": MD5.replace("0", "1"),
        "params": Params().as_dict(),
        "rebuild_code_sha256": code_fingerprint([steps[name] for name in REBUILT_STEPS]),
        "environment": {"device": "cpu", "threads": 1, "world_size": 1},
    }


def planted(registry: Registry, lineage: object) -> str:
    files = {
        "lineage.json": json.dumps(lineage).encode(),
        "metrics.json": b'{"accuracy": 0.5, "macro_f1": 0.5}',
        "config.json": b'{"backbone": "x"}',
        "model.safetensors": b"not weights",
    }
    return registry.register(files, {"decision": "PASS"})


def test_a_sound_record_gets_as_far_as_the_remote(tmp_path: Path) -> None:
    registry = Registry(LocalStorage(tmp_path / "registry"), "demo")
    version = planted(registry, sound_lineage())
    with pytest.raises(Exception, match="could not be pulled from DVC remote") as refused:
        reproduce(registry, version, tmp_path / "scratch", str(tmp_path / "empty-remote"))
    assert MD5 in str(refused.value)  # the missing data version, named
    assert not (tmp_path / "scratch" / "run").exists()  # nothing ran


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"data_md5": "aa/../../../etc.dir"}, "data_md5 as a DVC directory md5"),
        ({"test_data_md5": 5}, "test_data_md5 as a DVC directory md5"),
        ({"params": {"data": "data/x"}}, "params.data"),
        ({"params": None, "environment": None}, "lacks params (the params as given); environment ("),
        ({"environment": "cpu"}, "environment as a mapping"),
        ({"data.dir": "."}, "is not a plain folder"),
        ({"data.dir": "../outside"}, "is not a plain folder"),
        ({"data.dir": "/etc"}, "is not a plain folder"),
        ({"data.dir": ".dvc/cache"}, "is not a plain folder"),
        ({"data.dir": "data/sub/.."}, "is not a plain folder"),
        ({"data.dir": 7}, "is not a plain folder"),
        ({"data.test_dir": "data/fashion-mnist/test"}, "overlap"),
        ({"data.test_dir": "data/fashion-mnist"}, "overlap"),
        ({"train.epochs": "many"}, "its recorded params are not valid here"),
        ({"train.no_such_knob": 1}, "its recorded params are not valid here"),
        ({"rebuild_code_sha256": "0" * 64}, "was built by other code"),
    ],
)
def test_a_hostile_record_is_refused_before_anything_is_fetched(tmp_path: Path, change: dict, reason: str) -> None:
    registry = Registry(LocalStorage(tmp_path / "registry"), "demo")
    lineage = sound_lineage()
    for key, value in change.items():
        if key.startswith(("data.", "train.")):
            section, name = key.split(".")
            lineage["params"][section][name] = value
        else:
            lineage[key] = value
    version = planted(registry, lineage)
    with pytest.raises(NotReproducible) as refused:
        reproduce(registry, version, tmp_path / "scratch", str(tmp_path / "remote"))
    assert reason in str(refused.value)
    assert not (tmp_path / "scratch").exists()  # refused before the scratch folder was made
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry"]  # nothing written anywhere else either


def test_a_lineage_file_that_is_not_an_object_is_named(tmp_path: Path) -> None:
    registry = Registry(LocalStorage(tmp_path / "registry"), "demo")
    version = planted(registry, ["not", "a", "record"])
    with pytest.raises(NotReproducible, match=f"demo/{version}/lineage.json: not a JSON object"):
        reproduce(registry, version, tmp_path / "scratch", str(tmp_path / "remote"))
