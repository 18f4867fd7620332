"""Every backbone preset builds, freezes, takes a training step, predicts, and round-trips through the model folder
at the smallest input it accepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from headstart.ground.errors import ConfigError
from headstart.ground.params import HeadParams
from headstart.library.data.transforms import preprocessing_for
from headstart.library.models.backbones import create_classifier, freeze
from headstart.library.models.model_config import ModelConfig
from headstart.library.models.presets import PRESETS, check_input_size, list_presets
from headstart.library.models.saved_model import load_predictor, save_model


@pytest.mark.parametrize("preset", list_presets(), ids=lambda p: p.name)
def test_preset_builds_freezes_steps_and_predicts(preset, tmp_path: Path) -> None:
    from timm.optim import create_optimizer_v2

    torch.manual_seed(0)
    head = HeadParams(hidden=[16], dropout=0.1)
    model = create_classifier(preset.name, preset.offline_weights() or "none", 3, head)
    frozen = freeze(model, 1, "frozen")
    assert frozen, f"{preset.name}: stage 0 froze nothing"
    frozen_param = next(p for n, p in model.named_parameters() if n.startswith(frozen[0]))
    assert not frozen_param.requires_grad
    model = model.to(memory_format=torch.channels_last).train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    size = preset.min_input_size
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3)
    images, targets = torch.randn(2, 3, size, size), torch.tensor([0, 2])
    loss = torch.nn.functional.cross_entropy(model(images), targets)
    loss.backward()
    optimizer.step()
    after = dict(model.named_parameters())
    moved = [n for n, p in after.items() if p.requires_grad and not torch.equal(p, before[n])]
    assert any("classifier" in n or "fc" in n or "head" in n or "linear" in n for n in moved), moved[-3:]
    assert all(torch.equal(p, before[n]) for n, p in after.items() if not p.requires_grad)

    pre = preprocessing_for(model, size)
    config = ModelConfig(
        backbone=preset.name, classes=["a", "b", "c"], head=head.model_dump(), freeze_stages=1, bn="frozen",
        preprocessing=pre.to_dict(), scenario="finetune", lineage={},
    )  # fmt: skip
    model.eval()
    with torch.inference_mode():
        expected = model(images.contiguous(memory_format=torch.channels_last)).softmax(1).numpy()
    predictor = load_predictor(save_model(model, config, tmp_path / "model"))
    np.testing.assert_allclose(predictor.predict_proba(images), expected, atol=1e-5)


@pytest.mark.parametrize("name", ["inception_v3", "vgg16"])  # the architectures with a hard lower limit
def test_the_minimum_input_is_the_measured_one_and_too_small_names_it(name: str) -> None:
    """A forward pass at the preset's minimum works and one pixel less fails: the constant is measured, not
    copied; a smaller ``model.input_size`` is refused before any model is built, naming the minimum."""
    import timm

    smallest = PRESETS[name].min_input_size
    model = timm.create_model(name, pretrained=False, num_classes=3).eval()
    with torch.inference_mode():
        assert model(torch.randn(1, 3, smallest, smallest)).shape == (1, 3)
        with pytest.raises(RuntimeError):
            model(torch.randn(1, 3, smallest - 1, smallest - 1))
    with pytest.raises(ConfigError, match=rf"set model.input_size >= {smallest}"):
        check_input_size(name, smallest - 1)
    check_input_size(name, smallest)
    check_input_size("some_unlisted_timm_model", 8)  # presets only constrain what they know
