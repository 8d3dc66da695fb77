"""What a LoRA-family file holds, module by module, read from its tensor names the way A1111 reads them.

A file's keys are ``<module>.<part>`` (``lora_unet_down_blocks_0_resnets_0_conv1.hada_w1_a``). The parts of
one module say its algorithm (A1111's ``network_*.py`` pick their module the same way):

* LoRA / LoCon: ``lora_down.weight`` + ``lora_up.weight`` (or ``lora_A``/``lora_B``), optionally a Tucker
  core ``lora_mid.weight`` (LoCon on a k×k convolution);
* LoHa: ``hada_w1_a``, ``hada_w1_b``, ``hada_w2_a``, ``hada_w2_b``, optionally Tucker cores ``hada_t1``/``hada_t2``;
* LoKr: ``lokr_w1`` or ``lokr_w1_a``+``lokr_w1_b``, and ``lokr_w2`` or ``lokr_w2_a``+``lokr_w2_b``, optionally
  a Tucker core ``lokr_t2``;

each with an optional ``alpha`` (scale alpha / rank), ``scale`` (the scale itself) and ``dora_scale``
(weight-decomposed, "DoRA"). Other LyCORIS algorithms (full/diff, IA3, OFT, BOFT, GLoRA, norms) are named
and refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ckptbench.errors import CkptbenchError

COMMON_PARTS = frozenset({"alpha", "scale", "dora_scale"})
_LORA_PARTS = frozenset({"lora_down.weight", "lora_up.weight", "lora_mid.weight"})
_PEFT_NAMES = {"lora_A.weight": "lora_down.weight", "lora_B.weight": "lora_up.weight"}
_LOHA_PARTS = frozenset({"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2"})
_LOKR_PARTS = frozenset({"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"})
# Parts that only LyCORIS writes: a file with any of them is applied by ckptbench's own weight patching
# (diffusers' converters take plain LoRA files only).
LYCORIS_ONLY_PARTS = (_LOHA_PARTS | _LOKR_PARTS) | {"lora_mid.weight", "dora_scale"}
# Algorithms ckptbench does not apply, by a part that identifies them (A1111's network_full/ia3/oft/glora/norm).
_UNSUPPORTED = {"diff": "full (diff)", "diff_b": "full (diff)", "on_input": "IA3", "oft_blocks": "OFT",
                "oft_diag": "OFT", "oft_rotation": "BOFT", "a1.weight": "GLoRA", "w_norm": "norm", "b_norm": "norm"}
SUPPORTED = "LoRA/LoCon, LoHa and LoKr (with alpha, scale, dora_scale and Tucker factors)"


class UnsupportedNetworkError(CkptbenchError):
    """A module of a LoRA-family file uses an algorithm or a layout ckptbench does not apply."""


@dataclass(frozen=True)
class NetworkModule:
    """One adapted layer of a file: its kohya name, algorithm and tensors (by part name, LoRA parts as kohya's)."""

    name: str
    algorithm: str  # "LoRA", "LoHa" or "LoKr"
    tensors: Mapping[str, torch.Tensor]

    @property
    def tucker(self) -> bool:
        return any(part in self.tensors for part in ("lora_mid.weight", "hada_t1", "lokr_t2"))

    @property
    def dora(self) -> bool:
        return "dora_scale" in self.tensors


def module_parts(names: Iterable[str]) -> dict[str, set[str]]:
    """``module name → its parts`` for every key with a dot (A1111 splits at the first one)."""
    parts: dict[str, set[str]] = {}
    for key in names:
        module, dot, part = key.partition(".")
        if dot:
            parts.setdefault(module, set()).add(part)
    return parts


def algorithm(module: str, parts: set[str]) -> str:
    """The algorithm of one module from its part names; ``UnsupportedNetworkError`` for anything else."""
    parts = {_PEFT_NAMES.get(part, part) for part in parts}
    for part, name in _UNSUPPORTED.items():
        if part in parts:
            raise UnsupportedNetworkError(f"module {module} is a LyCORIS {name} layer ({part}), which ckptbench does "
                                          f"not apply; it applies {SUPPORTED}.")
    rest = parts - COMMON_PARTS
    if {"lora_down.weight", "lora_up.weight"} <= rest and rest <= _LORA_PARTS:
        return "LoRA"
    if {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"} <= rest and rest <= _LOHA_PARTS:
        if ("hada_t1" in rest) != ("hada_t2" in rest):
            raise UnsupportedNetworkError(f"module {module} has only one of hada_t1/hada_t2; a LoHa Tucker module "
                                          "has both. The file is damaged: download it again.")
        return "LoHa"
    has_w1 = "lokr_w1" in rest or {"lokr_w1_a", "lokr_w1_b"} <= rest
    has_w2 = "lokr_w2" in rest or {"lokr_w2_a", "lokr_w2_b"} <= rest
    if has_w1 and has_w2 and rest <= _LOKR_PARTS:
        return "LoKr"
    listed = ", ".join(sorted(parts))
    raise UnsupportedNetworkError(f"module {module} has the parts {listed}, which form no layer ckptbench knows; it "
                                  f"applies {SUPPORTED}.")


def read_modules(state: Mapping[str, torch.Tensor]) -> list[NetworkModule]:
    """Every module of a LoRA-family state dict with its algorithm (peft ``lora_A``/``lora_B`` renamed)."""
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        module, dot, part = key.partition(".")
        if dot:
            grouped.setdefault(module, {})[_PEFT_NAMES.get(part, part)] = tensor
    return [NetworkModule(name, algorithm(name, set(tensors)), tensors) for name, tensors in grouped.items()]


def needs_weight_patching(names: Iterable[str]) -> bool:
    """True when a file has parts only LyCORIS writes (diffusers cannot load it as a LoRA; the parts of
    algorithms ckptbench does not apply count too, so that the refusal names them)."""
    return any((part := key.partition(".")[2]) in LYCORIS_ONLY_PARTS or part in _UNSUPPORTED for key in names)


def describe(shapes: Mapping[str, Sequence[int]]) -> dict[str, Any] | None:
    """What ``inspect`` reports about a LoRA-family file from its tensor names and shapes (no data read):
    the network type (LoRA, LoCon, LoHa, LoKr, or several), modules per algorithm, Tucker and DoRA parts.

    None when no module has a known layout. A LoRA with k×k convolution layers or Tucker cores is LoCon
    (LyCORIS's name; kohya calls it LoRA-C3Lier).
    """
    counts: Counter[str] = Counter()
    tucker = dora = False
    unsupported: set[str] = set()
    for module, parts in module_parts(shapes).items():
        try:
            kind = algorithm(module, parts)
        except UnsupportedNetworkError:
            unsupported.update(_UNSUPPORTED.get(part, "unknown") for part in parts if part not in COMMON_PARTS)
            continue
        if kind == "LoRA":
            down = shapes.get(f"{module}.lora_down.weight") or shapes.get(f"{module}.lora_A.weight") or ()
            if "lora_mid.weight" in parts or (len(down) == 4 and tuple(down[2:]) != (1, 1)):
                kind = "LoCon"
        counts[kind] += 1
        tucker = tucker or bool(parts & {"lora_mid.weight", "hada_t1", "lokr_t2"})
        dora = dora or "dora_scale" in parts
    if not counts:
        return None
    # A LoCon file also adapts linear layers with plain LoRA modules: it is a LoCon file all the same.
    kinds = sorted(set(counts) - {"LoRA"} if "LoCon" in counts else set(counts))
    return {"type": " + ".join(kinds), "lycoris": bool(set(kinds) - {"LoRA"}), "modules": dict(counts),
            "tucker": tucker, "dora": dora, "unsupported": sorted(unsupported - {"unknown"})}


def network_evidence(network: dict[str, Any]) -> str:
    """One line for ``inspect``: "LyCORIS LoHa network: 295 LoHa modules, Tucker cores, dora_scale"."""
    modules = ", ".join(f"{count} {kind}" for kind, count in sorted(network["modules"].items()))
    extras = [part for part, flag in (("Tucker cores", network["tucker"]), ("dora_scale", network["dora"])) if flag]
    extras += [f"unsupported {name} modules" for name in network["unsupported"]]
    what = f"LyCORIS {network['type']} network" if network["lycoris"] else "LoRA network"
    return f"{what}: {', '.join([modules + ' modules', *extras])}"
