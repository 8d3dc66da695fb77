"""Which layer of a diffusers pipeline a kohya / LyCORIS module name means.

kohya's trainers (and LyCORIS through them) name a module by its path in the model they trained, dots made
underscores, behind a prefix: ``lora_unet_`` + the UNet path — the diffusers path for SD1.x/SD2.x
(``down_blocks_0_resnets_0_conv1``), the original (SGM/LDM) path for SDXL (``input_blocks_1_0_in_layers_2``)
— and ``lora_te_`` / ``lora_te1_`` / ``lora_te2_`` + the transformers CLIP path of the text encoders. A1111
accepts both UNet spellings; so does this table, built from the pipeline's own layers, with the original
names taken from ``unet_to_ldm`` (the mapping the single-file writer uses). LyCORIS's own diffusers wrapper
writes ``lycoris_`` + the diffusers path; those names are accepted too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from ckptbench.lycoris.deltas import delta_shape, fits, has_effect
from ckptbench.lycoris.keys import NetworkModule, UnsupportedNetworkError
from ckptbench.models.ldm_layout import unet_to_ldm

TEXT_ENCODER_PREFIXES = {"text_encoder": ("lora_te_", "lora_te1_"), "text_encoder_2": ("lora_te2_",)}
KOHYA_PREFIXES = ("lora_unet_", "lycoris_", "lora_te_", "lora_te1_", "lora_te2_")


@dataclass(frozen=True)
class Target:
    """A layer a network module can adapt; ``text`` layers take the text-encoder multiplier."""

    component: str
    path: str
    layer: torch.nn.Module

    @property
    def text(self) -> bool:
        return self.component.startswith("text_encoder")


def pipeline_targets(pipeline: Any) -> dict[str, Target]:
    """kohya / LyCORIS module name → layer, for every linear and convolution layer of the UNet and text encoders."""
    targets: dict[str, Target] = {}
    unet = getattr(pipeline, "unet", None)
    if isinstance(unet, torch.nn.Module):
        layers = dict(_layers(unet))
        original = _original_names(layers, unet.config)
        for path, layer in layers.items():
            target = Target("unet", path, layer)
            for name in {path, original.get(path, path)}:
                targets["lora_unet_" + name.replace(".", "_")] = target
            targets["lycoris_" + path.replace(".", "_")] = target
    for component, prefixes in TEXT_ENCODER_PREFIXES.items():
        encoder = getattr(pipeline, component, None)
        if not isinstance(encoder, torch.nn.Module):
            continue
        for path, layer in _layers(encoder):
            # Real files name the layers from text_model.* whatever the transformers version nests.
            name = (path if path.startswith("text_model.") else f"text_model.{path}").replace(".", "_")
            for prefix in prefixes:
                targets[prefix + name] = Target(component, path, layer)
    return targets


def _layers(model: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Module]]:
    """The linear and convolution layers of a model by path; layers peft has wrapped count as themselves."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for path, module in model.named_modules():
        if ".base_layer" in path or any(part.startswith("lora_") for part in path.split(".")):
            continue  # peft's own modules inside a wrapped layer
        if isinstance(module, BaseTunerLayer):
            module = module.get_base_layer()
        if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
            yield path, module


def _original_names(layers: dict[str, torch.nn.Module], config: Any) -> dict[str, str]:
    """diffusers path → original UNet path, for the UNets ``unet_to_ldm`` knows (else no alias)."""
    weights = {f"{path}.weight": layer.weight for path, layer in layers.items()}
    try:
        renamed = unet_to_ldm(weights, config)
    except (KeyError, TypeError, ValueError):
        return {}
    by_tensor = {id(tensor): key for key, tensor in renamed.items()}
    return {key.removesuffix(".weight"): by_tensor[id(tensor)].removesuffix(".weight")
            for key, tensor in weights.items() if id(tensor) in by_tensor}


@dataclass(frozen=True)
class MatchedNetwork:
    """A file's modules matched to the layers they adapt, with what did not match or does nothing."""

    matched: tuple[tuple[NetworkModule, Target], ...]
    unmatched: tuple[str, ...]
    no_effect: tuple[str, ...]


def match_modules(modules: list[NetworkModule], targets: dict[str, Target]) -> MatchedNetwork:
    """Pair each module with its layer; a module whose ΔW does not fit its layer's weight is an error (the
    file is for another architecture), as it is in A1111."""
    matched: list[tuple[NetworkModule, Target]] = []
    unmatched: list[str] = []
    no_effect: list[str] = []
    for module in modules:
        target = targets.get(module.name)
        if target is None:
            unmatched.append(module.name)
            continue
        shape = target.layer.weight.shape
        if not fits(module, shape):
            raise UnsupportedNetworkError(
                f"module {module.name} changes a weight of shape {delta_shape(module)}, but the layer {target.path} "
                f"has shape {tuple(shape)}: the file was made for another model architecture.")
        if has_effect(module):
            matched.append((module, target))
        else:
            no_effect.append(module.name)
    return MatchedNetwork(tuple(matched), tuple(unmatched), tuple(no_effect))
