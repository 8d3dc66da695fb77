"""Our Flux key layout equals diffusers' own Flux converter on a transformer of the real width (3072), which
that converter assumes (one double and one single block; uint8 random contents: only the layout is tested).

Slow: about 0.5 GB of tensors.
"""

from __future__ import annotations

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import FluxTransformer2DModel
from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

from ckptbench.models.checkpoint import BUNDLED_CONFIGS
from ckptbench.models.transformer_layout import to_diffusers, to_original


@pytest.mark.slow
def test_flux_layout_at_real_width_equals_diffusers_converter() -> None:
    config = FluxTransformer2DModel.load_config(BUNDLED_CONFIGS / "flux-dev", subfolder="transformer")
    with init_empty_weights():
        model = FluxTransformer2DModel.from_config({**config, "num_layers": 1, "num_single_layers": 1})
    shapes = {name: tuple(t.shape) for name, t in to_original(model.state_dict(), "flux").items()}
    generator = torch.Generator().manual_seed(0)
    original = {name: torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
                for name, shape in shapes.items()}
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(original))
    ours = to_diffusers(dict(original), "flux")
    assert ours.keys() == theirs.keys() == model.state_dict().keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    back = to_original(ours, "flux")
    assert back.keys() == original.keys() and all(torch.equal(back[k], original[k]) for k in back)
