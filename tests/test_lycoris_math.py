"""LyCORIS weight deltas against the published formulas and against peft's LoHa/LoKr layers.

References: the LyCORIS project's ``lycoris/functional/{locon,loha,lokr,general}.py`` and A1111 v1.10's
``extensions-builtin/Lora/network_{lora,hada,lokr}.py``, ``lyco_helpers.py`` and ``network.py``
(``apply_weight_decompose``), restated below as loops and block assignments (not the einsums the
production code uses), in float64; and peft's ``LoHaLayer``/``LoKrLayer.get_delta_weight``, a second
implementation of the same LyCORIS math.
"""

from __future__ import annotations

import pytest
import torch
from peft import LoHaConfig, LoKrConfig
from peft.tuners.loha.layer import Conv2d as LohaConv2d
from peft.tuners.loha.layer import Linear as LohaLinear
from peft.tuners.lokr.layer import Conv2d as LokrConv2d
from peft.tuners.lokr.layer import Linear as LokrLinear

from ckptbench.demo.tiny_lycoris import factorization
from ckptbench.lycoris.deltas import decomposed, delta_shape, has_effect, module_delta, patched_weight
from ckptbench.lycoris.keys import NetworkModule, UnsupportedNetworkError, algorithm, describe, read_modules

TOLERANCE = 1e-6


def random(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed + sum(shape))) * 0.5


def reference_lora(t: dict[str, torch.Tensor], dyn: int | None = None) -> torch.Tensor:
    """ΔW = Σ_a up[:, a] ⊗ down[a] (the first ``dyn`` ranks); with a Tucker core Σ_ab mid[a, b] up[:, a] down[b]."""
    up, down = t["lora_up.weight"].double(), t["lora_down.weight"].double()
    up = up.reshape(up.shape[0], -1)
    rank = down.shape[0]
    if "lora_mid.weight" in t:
        mid = t["lora_mid.weight"].double()
        down = down.reshape(rank, -1)
        delta = torch.zeros(up.shape[0], down.shape[1], *mid.shape[2:], dtype=torch.float64)
        for a in range(rank):
            for b in range(rank):
                delta += up[:, a, None, None, None] * down[b][None, :, None, None] * mid[a, b][None, None]
        return delta
    delta = torch.zeros(up.shape[0], *down.shape[1:], dtype=torch.float64)
    for a in range(rank if dyn is None else min(dyn, rank)):
        delta += up[:, a].reshape(-1, *[1] * (down.ndim - 1)) * down[a][None]
    return delta


def tucker_product(core: torch.Tensor, out_factor: torch.Tensor, in_factor: torch.Tensor) -> torch.Tensor:
    core, out_factor, in_factor = core.double(), out_factor.double(), in_factor.double()
    result = torch.zeros(out_factor.shape[1], in_factor.shape[1], *core.shape[2:], dtype=torch.float64)
    for a in range(core.shape[0]):
        for b in range(core.shape[1]):
            result += out_factor[a][:, None, None, None] * in_factor[b][None, :, None, None] * core[a, b][None, None]
    return result


def reference_loha(t: dict[str, torch.Tensor]) -> torch.Tensor:
    """ΔW = (w1_a w1_b) ⊙ (w2_a w2_b), each factor a Tucker product when cores are given."""
    if "hada_t1" in t:
        return (tucker_product(t["hada_t1"], t["hada_w1_a"], t["hada_w1_b"])
                * tucker_product(t["hada_t2"], t["hada_w2_a"], t["hada_w2_b"]))
    first = t["hada_w1_a"].double() @ t["hada_w1_b"].double()
    return first * (t["hada_w2_a"].double() @ t["hada_w2_b"].double())


def reference_lokr(t: dict[str, torch.Tensor], kernel: tuple[int, ...] = ()) -> torch.Tensor:
    """ΔW = w1 ⊗ w2, written as blocks: block (i, j) of ΔW is w1[i, j] · w2."""
    w1 = t["lokr_w1"].double() if "lokr_w1" in t else t["lokr_w1_a"].double() @ t["lokr_w1_b"].double()
    if "lokr_w2" in t:
        w2 = t["lokr_w2"].double()
    elif "lokr_t2" in t:
        w2 = tucker_product(t["lokr_t2"], t["lokr_w2_a"], t["lokr_w2_b"])
    else:
        w2_b = t["lokr_w2_b"].double()
        w2 = (t["lokr_w2_a"].double() @ w2_b.reshape(w2_b.shape[0], -1)).reshape(-1, *w2_b.shape[1:])
    rows, cols = w2.shape[0], w2.shape[1]
    delta = torch.zeros(w1.shape[0] * rows, w1.shape[1] * cols, *w2.shape[2:], dtype=torch.float64)
    for i in range(w1.shape[0]):
        for j in range(w1.shape[1]):
            delta[i * rows:(i + 1) * rows, j * cols:(j + 1) * cols] = w1[i, j] * w2
    return delta


def reference_dora(weight: torch.Tensor, delta: torch.Tensor, magnitude: torch.Tensor, multiplier: float
                   ) -> torch.Tensor:
    """A1111 ``apply_weight_decompose``: V = W + ΔW; each input channel of V rescaled to its magnitude;
    the result reached from W by ``multiplier`` (W + m·(V' − W))."""
    weight, merged = weight.double(), weight.double() + delta
    rescaled = merged.clone()
    for channel in range(merged.shape[1]):
        rescaled[:, channel] *= magnitude.flatten()[channel].double() / merged[:, channel].norm()
    return weight + multiplier * (rescaled - weight)


def differences(ours: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    ours, reference = ours.double().reshape(reference.shape), reference
    absolute = (ours - reference).abs().max().item()
    return absolute, absolute / reference.abs().max().item()


def module(name: str, **tensors: torch.Tensor) -> NetworkModule:
    parts = {key.replace("__", "."): value for key, value in tensors.items()}
    return NetworkModule(name, algorithm(name, set(parts)), parts)


LINEAR, CONV3, CONV1 = torch.Size([48, 32]), torch.Size([32, 16, 3, 3]), torch.Size([32, 16, 1, 1])


@pytest.mark.parametrize(("shape", "parts", "rank", "alpha"), [
    (LINEAR, {"lora_down__weight": random(4, 32), "lora_up__weight": random(48, 4)}, 4, 2.0),
    (CONV3, {"lora_down__weight": random(4, 16, 3, 3), "lora_up__weight": random(32, 4, 1, 1)}, 4, 1.0),
    (CONV1, {"lora_down__weight": random(4, 16, 1, 1), "lora_up__weight": random(32, 4, 1, 1)}, 4, 8.0),
    (CONV3, {"lora_down__weight": random(4, 16, 1, 1), "lora_mid__weight": random(4, 4, 3, 3),
             "lora_up__weight": random(32, 4, 1, 1)}, 4, 3.0),
])
def test_locon_delta_is_up_times_down_or_the_tucker_product(shape, parts, rank, alpha) -> None:
    net = module("lora_unet_x", **parts, alpha=torch.tensor(alpha))
    ours = module_delta(net, shape)
    assert differences(ours, reference_lora(net.tensors).reshape(shape) * alpha / rank)[0] < TOLERANCE


def test_dyn_keeps_the_first_ranks_and_the_full_rank_scale() -> None:
    """A1111 ``rebuild_conventional(up, down, shape, dyn_dim)``: up[:, :dyn] @ down[:dyn]; alpha / 8 stays."""
    net = module("lora_unet_x", lora_down__weight=random(8, 32), lora_up__weight=random(48, 8), alpha=torch.tensor(4.0))
    ours = module_delta(net, LINEAR, dyn=3)
    assert differences(ours, reference_lora(net.tensors, dyn=3) * 4.0 / 8)[0] < TOLERANCE
    assert torch.equal(module_delta(net, LINEAR, dyn=20), module_delta(net, LINEAR))


@pytest.mark.parametrize(("shape", "tucker"), [(LINEAR, False), (CONV1, False), (CONV3, False), (CONV3, True)])
def test_loha_delta_matches_the_formula_and_peft(shape: torch.Size, tucker: bool) -> None:
    out, in_, *kernel = shape
    rank, alpha = 4, 3.0
    if tucker:  # LyCORIS uses Tucker cores only for kernels larger than 1×1
        parts = {"hada_t1": random(rank, rank, 3, 3), "hada_w1_a": random(rank, out), "hada_w1_b": random(rank, in_),
                 "hada_t2": random(rank, rank, 3, 3, seed=1), "hada_w2_a": random(rank, out, seed=1),
                 "hada_w2_b": random(rank, in_, seed=1)}
    else:
        flat = in_ * (kernel[0] * kernel[1] if kernel else 1)
        parts = {"hada_w1_a": random(out, rank), "hada_w1_b": random(rank, flat),
                 "hada_w2_a": random(out, rank, seed=1), "hada_w2_b": random(rank, flat, seed=1)}
    net = module("lora_unet_x", **parts, alpha=torch.tensor(alpha))
    ours = module_delta(net, shape)
    assert differences(ours, reference_loha(net.tensors).reshape(shape) * alpha / rank)[0] < TOLERANCE
    # peft's LoHa layer, given the same factors and LyCORIS's scale alpha / rank.
    base = torch.nn.Linear(in_, out) if not kernel else torch.nn.Conv2d(in_, out, kernel[0])
    layer_class = LohaLinear if not kernel else LohaConv2d
    config = LoHaConfig(r=rank, alpha=alpha, use_effective_conv2d=tucker)
    layer = layer_class(base, adapter_name="a", config=config, r=rank, alpha=alpha)
    for part, tensor in parts.items():
        getattr(layer, part)["a"] = torch.nn.Parameter(tensor.clone())
    with torch.no_grad():
        assert differences(ours, layer.get_delta_weight("a"))[0] < TOLERANCE


LOKR_CASES = {
    "whole w1, w2 = a·b": (LINEAR, {"lokr_w1": (6, 4), "lokr_w2_a": (8, 2), "lokr_w2_b": (2, 8)}, 2),
    "both factorised": (LINEAR, {"lokr_w1_a": (6, 2), "lokr_w1_b": (2, 4), "lokr_w2_a": (8, 2),
                                 "lokr_w2_b": (2, 8)}, 2),
    "both whole (scale 1)": (LINEAR, {"lokr_w1": (6, 4), "lokr_w2": (8, 8)}, None),
    "conv, w2 = a·b": (CONV3, {"lokr_w1": (4, 2), "lokr_w2_a": (8, 2), "lokr_w2_b": (2, 8, 3, 3)}, 2),
    "conv, Tucker w2": (CONV3, {"lokr_w1": (4, 2), "lokr_t2": (2, 2, 3, 3), "lokr_w2_a": (2, 8),
                                "lokr_w2_b": (2, 8)}, 2),
    "conv, whole": (CONV3, {"lokr_w1": (4, 2), "lokr_w2": (8, 8, 3, 3)}, None),
}


@pytest.mark.parametrize("case", list(LOKR_CASES))
def test_lokr_delta_matches_the_formula_and_peft(case: str) -> None:
    shape, shapes, rank = LOKR_CASES[case]
    alpha = 1.5
    parts = {part: random(*size, seed=index) for index, (part, size) in enumerate(shapes.items())}
    net = module("lora_unet_x", **parts, alpha=torch.tensor(alpha))
    scale = 1.0 if rank is None else alpha / rank  # both factors whole: alpha is ignored (LyCORIS and A1111)
    ours = module_delta(net, shape)
    assert differences(ours, reference_lokr(net.tensors).reshape(shape) * scale)[0] < TOLERANCE
    out, in_, *kernel = shape
    base = torch.nn.Linear(in_, out) if not kernel else torch.nn.Conv2d(in_, out, kernel[0])
    layer_class = LokrLinear if not kernel else LokrConv2d
    layer = layer_class(base, adapter_name="a", config=LoKrConfig(r=2, alpha=2.0), r=2, alpha=2.0)
    for part in ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2"):
        if "a" in getattr(layer, part):
            del getattr(layer, part)["a"]
    for part, tensor in parts.items():
        # peft multiplies a factorised conv w2 as matrices: its w2_b is stored flat.
        value = tensor.reshape(tensor.shape[0], -1) if part == "lokr_w2_b" and "lokr_t2" not in parts else tensor
        getattr(layer, part)["a"] = torch.nn.Parameter(value.clone())
    layer.scaling["a"] = scale
    with torch.no_grad():
        assert differences(ours, layer.get_delta_weight("a"))[0] < TOLERANCE


@pytest.mark.parametrize("shape", [LINEAR, CONV3])
@pytest.mark.parametrize("multiplier", [1.0, 0.8, -0.5])
def test_dora_rescales_each_input_channel_and_interpolates_by_the_multiplier(shape, multiplier) -> None:
    out, in_, *kernel = shape
    weight = random(*shape, seed=5)
    parts = {"lora_down__weight": random(4, in_, *kernel), "lora_up__weight": random(out, 4, *[1] * len(kernel))}
    magnitude = weight.transpose(0, 1).reshape(in_, -1).norm(dim=1) * (1 + 0.2 * random(in_, seed=9))
    net = module("lora_unet_x", **parts, alpha=torch.tensor(2.0),
                 dora_scale=magnitude.reshape(1, in_, *[1] * len(kernel)))
    ours = patched_weight(weight, net, multiplier)
    delta = reference_lora(net.tensors).reshape(shape) * 2.0 / 4
    assert differences(ours, reference_dora(weight, delta, magnitude, multiplier))[0] < TOLERANCE
    # At multiplier 1 every input channel of the result has exactly the stored norm.
    if multiplier == 1.0:
        norms = patched_weight(weight, net, 1.0).transpose(0, 1).reshape(in_, -1).norm(dim=1)
        assert torch.allclose(norms, magnitude, rtol=1e-5)


def test_dora_scale_on_the_output_axis_rescales_rows() -> None:
    """LyCORIS's ``wd_on_out`` layout, (out, 1): the norm is taken per output channel of the merged weight."""
    weight = random(48, 32, seed=3)
    magnitude = torch.rand(48, 1, generator=torch.Generator().manual_seed(0)) + 0.5
    rows = decomposed(weight, magnitude)
    assert torch.allclose(rows.norm(dim=1), magnitude.flatten(), rtol=1e-5)
    with pytest.raises(UnsupportedNetworkError, match="dora_scale of shape"):
        decomposed(weight, torch.ones(5))


def test_scale_alpha_and_effect_rules() -> None:
    down, up = random(4, 32), random(48, 4)
    plain = module("m", lora_down__weight=down, lora_up__weight=up)
    assert torch.allclose(module_delta(plain, LINEAR), up @ down)  # no alpha: scale 1 (A1111 calc_scale)
    stated = module("m", lora_down__weight=down, lora_up__weight=up, alpha=torch.tensor(2.0), scale=torch.tensor(0.3))
    assert torch.allclose(module_delta(stated, LINEAR), 0.3 * up @ down)  # an explicit scale wins over alpha
    assert not has_effect(module("m", lora_down__weight=down, lora_up__weight=torch.zeros(48, 4)))
    assert not has_effect(module("m", lora_down__weight=down, lora_up__weight=up, alpha=torch.tensor(0.0)))
    assert has_effect(module("m", lora_down__weight=down, lora_up__weight=torch.zeros(48, 4),
                             dora_scale=torch.ones(1, 32)))
    assert delta_shape(module("m", lokr_w1=torch.ones(4, 2), lokr_w2=torch.ones(8, 8, 3, 3))) == (32, 16, 3, 3)


def test_factorization_is_lycoris_divisor_pair() -> None:
    """LyCORIS ``general.factorization``, worked through by hand (its docstring's table lists 360 → 8, 45 under
    factor -1, but its loop gives 18, 20; 8, 45 is what factor 8 gives)."""
    assert [factorization(n) for n in (127, 128, 250, 360, 512, 1024)] == [
        (1, 127), (8, 16), (10, 25), (18, 20), (16, 32), (32, 32)]
    assert factorization(128, 4) == (4, 32) and factorization(360, 8) == (8, 45)


def test_parts_name_the_algorithm_and_unsupported_ones_are_refused() -> None:
    assert algorithm("m", {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "alpha"}) == "LoHa"
    assert algorithm("m", {"lokr_w1_a", "lokr_w1_b", "lokr_w2", "dora_scale"}) == "LoKr"
    assert algorithm("m", {"lora_A.weight", "lora_B.weight"}) == "LoRA"
    for parts, name in (({"oft_blocks", "alpha"}, "OFT"), ({"diff", "diff_b"}, "full"), ({"weight", "on_input"}, "IA3"),
                        ({"w_norm", "b_norm"}, "norm")):
        with pytest.raises(UnsupportedNetworkError, match=name):
            algorithm("m", parts)
    with pytest.raises(UnsupportedNetworkError, match="form no layer"):
        algorithm("m", {"hada_w1_a", "hada_w1_b"})
    with pytest.raises(UnsupportedNetworkError, match="hada_t1/hada_t2"):
        algorithm("m", {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1"})
    assert [m.algorithm for m in read_modules({"a.lokr_w1": torch.ones(1), "a.lokr_w2": torch.ones(1)})] == ["LoKr"]
    assert describe({"x.lora_down.weight": (4, 8, 3, 3), "x.lora_up.weight": (8, 4, 1, 1),
                     "y.lora_down.weight": (4, 8), "y.lora_up.weight": (8, 4)})["type"] == "LoCon"
