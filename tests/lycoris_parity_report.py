"""Prints how far ckptbench's merged LyCORIS weights are from the reference formulas (and peft's LoHa/LoKr).

    python -m tests.lycoris_parity_report

For each tiny network of ``tests/test_lycoris.py`` (built from the tiny SD1.5 pipeline and saved in the
LyCORIS key layout), every adapted layer is applied at text-encoder 0.6 / UNet 0.8 (merged, or as a peft
adapter for the plain LoCon diffusers loads) and compared with the
float64 restatement of the formula in ``tests/test_lycoris_math.py``; the LoHa/LoKr module deltas are also
compared with peft's ``get_delta_weight``. Maximum absolute and relative (to the largest reference value of
the layer) differences over all layers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from ckptbench.demo.tiny import tiny_sd15_pipeline
from ckptbench.demo.tiny_lora import save_lora
from ckptbench.demo.tiny_lycoris import lycoris_network
from ckptbench.generate.lora import LoraApplier, read_lora_file
from ckptbench.lycoris.deltas import module_delta
from ckptbench.lycoris.keys import read_modules
from ckptbench.lycoris.targets import pipeline_targets
from tests.test_lycoris import ALPHA, NETWORKS, _reference, effective_weights, use
from tests.test_lycoris_math import differences


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        print(f"{'network':10} {'layers':>6} {'max abs':>10} {'max rel':>10}")
        for name, (kind, options) in {**NETWORKS, "locon_plain": ("locon", {"seed": 6})}.items():
            pipeline = tiny_sd15_pipeline(seed=1)
            state = lycoris_network(pipeline.unet, pipeline.text_encoder, kind, alpha=ALPHA, **{"rank": 4, **options})
            path = save_lora(state, Path(folder) / f"{name}.safetensors")
            targets = pipeline_targets(pipeline)
            modules = [(module, targets[module.name].layer) for module in read_modules(read_lora_file(path))]
            originals = [layer.weight.detach().clone() for _, layer in modules]
            LoraApplier(pipeline, "a").activate(use(path, 0.6, 0.8))
            applied = effective_weights(pipeline, use(path))
            worst = (0.0, 0.0)
            for (module, layer), original in zip(modules, originals, strict=True):
                multiplier = 0.6 if module.name.startswith("lora_te") else 0.8
                found = differences(applied[id(layer)], _reference(module, original, multiplier))
                worst = (max(worst[0], found[0]), max(worst[1], found[1]))
            print(f"{name:10} {len(modules):6d} {worst[0]:10.2e} {worst[1]:10.2e}")
        _peft_figures()


def _peft_figures() -> None:
    """LoHa and LoKr module deltas of the tiny networks against peft's implementation of the same math."""
    from peft import LoHaConfig, LoKrConfig
    from peft.tuners.loha.layer import Conv2d as LohaConv2d
    from peft.tuners.loha.layer import Linear as LohaLinear
    from peft.tuners.lokr.layer import Conv2d as LokrConv2d
    from peft.tuners.lokr.layer import Linear as LokrLinear

    pipeline = tiny_sd15_pipeline(seed=1)
    targets = pipeline_targets(pipeline)
    for kind in ("loha", "lokr"):
        options = NETWORKS[kind][1]
        state = lycoris_network(pipeline.unet, pipeline.text_encoder, kind, alpha=ALPHA, **{"rank": 4, **options})
        worst = (0.0, 0.0)
        for module in read_modules(state):
            layer = targets[module.name].layer
            conv = isinstance(layer, torch.nn.Conv2d)
            ours = module_delta(module, layer.weight.shape)
            if kind == "loha":
                config = LoHaConfig(r=4, alpha=ALPHA, use_effective_conv2d=module.tucker)
                peft = (LohaConv2d if conv else LohaLinear)(layer, adapter_name="a", config=config, r=4, alpha=ALPHA)
            else:
                peft = (LokrConv2d if conv else LokrLinear)(layer, adapter_name="a", config=LoKrConfig(r=4), r=4,
                                                             alpha=4)
                for part in ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"):
                    if "a" in getattr(peft, part):
                        del getattr(peft, part)["a"]
                rank = next((module.tensors[p].shape[0] for p in ("lokr_w1_b", "lokr_w2_b") if p in module.tensors),
                            None)
                peft.scaling["a"] = ALPHA / rank if rank else 1.0
            for part, tensor in module.tensors.items():
                if part in ("alpha", "dora_scale"):
                    continue
                if part == "lokr_w2_b" and "lokr_t2" not in module.tensors:
                    tensor = tensor.reshape(tensor.shape[0], -1)  # peft multiplies a conv w2 as matrices
                getattr(peft, part)["a"] = torch.nn.Parameter(tensor.clone())
            with torch.no_grad():
                found = differences(ours, peft.get_delta_weight("a").double())
            worst = (max(worst[0], found[0]), max(worst[1], found[1]))
        print(f"{kind} vs peft: max abs {worst[0]:.2e}, max rel {worst[1]:.2e}")


if __name__ == "__main__":
    main()
