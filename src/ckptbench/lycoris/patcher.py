"""Merging LyCORIS networks into a pipeline's layers, and taking them out again bit for bit.

A1111 applies every network by adding its weight delta to the layer's weight (keeping a copy of the
original), and DoRA can only be applied that way: its rescaling needs the merged weight. So do we. Each
set of active networks is merged from the originals, in float32, one layer at a time, and cast once to the
layer's dtype; switching sets, or none, first copies the originals back, so a layer without active
networks holds exactly its original bits. The originals are kept on the CPU (as A1111 does), only for the
layers a network touches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ckptbench.lycoris.deltas import patched_weight
from ckptbench.lycoris.keys import NetworkModule
from ckptbench.lycoris.targets import Target


@dataclass(frozen=True)
class ActiveNetwork:
    """A network to merge: a name for its file, its modules with their layers, and its multipliers."""

    name: str
    matched: tuple[tuple[NetworkModule, Target], ...]
    text_weight: float
    unet_weight: float
    dyn: int = 0


class WeightPatcher:
    """Holds which networks are merged into which layers, and the original weights of those layers."""

    def __init__(self) -> None:
        self._originals: dict[int, tuple[torch.nn.Module, torch.Tensor]] = {}
        self._active: tuple[tuple[str, float, float, int], ...] = ()

    def apply(self, networks: Sequence[ActiveNetwork]) -> None:
        """Make exactly ``networks`` (in this order, at these multipliers) act on the layers."""
        signature = tuple((n.name, n.text_weight, n.unet_weight, n.dyn) for n in networks)
        if signature == self._active:
            return
        self.restore()
        by_layer: dict[int, tuple[torch.nn.Module, list[tuple[NetworkModule, float, int]]]] = {}
        for active in networks:
            for module, target in active.matched:
                multiplier = active.text_weight if target.text else active.unet_weight
                by_layer.setdefault(id(target.layer), (target.layer, []))[1].append((module, multiplier, active.dyn))
        try:
            with torch.no_grad():
                for key, (layer, modules) in by_layer.items():
                    original = layer.weight.detach()
                    self._originals[key] = (layer, original.to("cpu", copy=True))
                    # Networks on one layer are applied one after another, each to the weight the previous
                    # ones left (what A1111 does; it matters only for DoRA, whose rescaling sees that weight).
                    weight = original.float()
                    for module, multiplier, dyn in modules:
                        weight = patched_weight(weight, module, multiplier, dyn)
                    layer.weight.copy_(weight.to(original.dtype))
        except BaseException:
            self.restore()  # never leave a set half merged
            raise
        self._active = signature

    def restore(self) -> None:
        """Copy every patched layer's original weight back."""
        with torch.no_grad():
            for layer, original in self._originals.values():
                layer.weight.copy_(original.to(layer.weight.device))
        self._originals.clear()
        self._active = ()
