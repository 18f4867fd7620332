"""Backbone presets for the seven classic families: what timm does not record (family, smallest input, where the
weights come from). Listing them imports no torch: ``headstart backbones`` answers at once."""

from __future__ import annotations

from dataclasses import dataclass

from headstart.ground.errors import ConfigError
from headstart.library.models.weights import package_available, package_for


@dataclass(frozen=True)
class BackbonePreset:
    """What timm does not record about a backbone: its family, smallest input, and where weights come from."""

    name: str
    family: str
    min_input_size: int  # measured: the smallest square input a forward pass accepts
    heavy: bool = False  # tens of millions of parameters: tests keep it to a single step

    def weight_sources(self) -> list[str]:
        """Sources that can provide ImageNet weights, offline ones first."""
        package = package_for(self.name)
        return [package, "hub", "file:PATH"] if package else ["hub", "file:PATH"]

    def offline_weights(self) -> str | None:
        """The installed offline source for this backbone, or None."""
        package = package_for(self.name)
        return package if package and package_available(package.split(":", 1)[1]) else None


PRESETS: dict[str, BackbonePreset] = {
    p.name: p
    for p in (
        BackbonePreset("vgg16", "VGG", 32, heavy=True),
        BackbonePreset("mobilenetv2_100", "MobileNet", 16),
        BackbonePreset("mobilenetv3_large_100", "MobileNet", 16),
        BackbonePreset("densenet121", "DenseNet", 32),
        BackbonePreset("inception_v3", "Inception", 75),
        BackbonePreset("resnet50", "ResNet", 16),
        BackbonePreset("tf_efficientnet_lite0", "EfficientNet", 16),
        BackbonePreset("tf_efficientnet_lite1", "EfficientNet", 16),
        BackbonePreset("tf_efficientnet_lite2", "EfficientNet", 16),
        BackbonePreset("efficientnet_b0", "EfficientNet", 16),
        BackbonePreset("nasnetalarge", "NASNet", 16, heavy=True),
    )
}


def list_presets() -> list[BackbonePreset]:
    """The presets, by family."""
    return sorted(PRESETS.values(), key=lambda p: (p.family, p.name))


def check_input_size(backbone: str, input_size: int) -> None:
    """Refuse an input smaller than the preset's minimum, saying which value works."""
    preset = PRESETS.get(backbone)
    if preset and input_size < preset.min_input_size:
        raise ConfigError(
            f"model.input_size={input_size} is too small for {backbone}: set model.input_size >= "
            f"{preset.min_input_size}"
        )
