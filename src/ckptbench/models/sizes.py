"""Do a single file's tensor sizes fit the config folder it will be built with?

Checked from the safetensors header alone: the file's tensors become meta tensors of the same shapes
(no weight is read), diffusers' own converters rename them as loading would, and the result is compared
with the modules the config describes, built on the meta device. So ``ckptbench validate`` and a run's
planning name a non-standard model that needs ``config`` before any weights are loaded, in one sentence,
instead of a loader's error deep inside the run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ckptbench.models.families.unet import TextEncoderPart
    from ckptbench.models.state_dict import ModelFile

_UNET, _VAE = "model.diffusion_model.", "first_stage_model."
_SHAPE_ERROR = re.compile(r"(?P<name>[\w.]+) expected shape torch\.Size\(\[(?P<want>[\d, ]*)\]\), but got "
                          r"torch\.Size\(\[(?P<got>[\d, ]*)\]\)")


def unet_checkpoint_size_problem(model: ModelFile, config: Path, text_parts: Sequence[TextEncoderPart],
                                 baked_vae: bool) -> str | None:
    """The first way the file's UNet, text encoders or (``baked_vae``) VAE differ in size from ``config``,
    as a phrase naming the module, the tensor and both shapes, with a count of the others; None: they fit.
    A file the converters cannot follow is left to the loader (None), which then says what is wrong."""
    try:
        problems = [*_text_problems(model, config, text_parts), *_unet_problems(model, config)]
        if baked_vae:
            problems += _vae_problems(model, config)
    except Exception:  # an unusual layout: loading reports it with the loader's own words
        return None
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more tensor(s) differ)" if len(problems) > 1 else ""
    return problems[0] + more


def describe_load_error(error: BaseException) -> str:
    """A loader's error as one whole phrase: a size mismatch as "tensor X is A in the file, B in the config",
    anything else as its first line, never cut mid-word."""
    text = str(error).strip()
    match = _SHAPE_ERROR.search(text)
    if match:
        return (f"tensor {match['name']} is {_shape(match['got'])} in the file but {_shape(match['want'])} in the "
                "config")
    first = text.splitlines()[0] if text else type(error).__name__
    sentence = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0]
    return sentence.rstrip(".")


def _shape(numbers: str | Sequence[int]) -> str:
    values = [int(v) for v in numbers.split(",") if v.strip()] if isinstance(numbers, str) else list(numbers)
    return "×".join(str(v) for v in values) or "a scalar"


def _meta(model: ModelFile, prefix: str) -> dict[str, torch.Tensor]:
    import torch

    return {name: torch.empty(info.shape, device="meta") for name, info in model.tensors.items()
            if name.startswith(prefix)}


def _config(config: Path, component: str) -> dict[str, Any]:
    return json.loads((config / component / "config.json").read_text(encoding="utf-8"))


def _compare(module: str, converted: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> list[str]:
    return [f"the {module}'s {name} is {_shape(tuple(tensor.shape))} in the file but "
            f"{_shape(tuple(expected[name].shape))} in the config"
            for name, tensor in converted.items()
            if name in expected and tuple(tensor.shape) != tuple(expected[name].shape)]


def _unet_problems(model: ModelFile, config: Path) -> list[str]:
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    settings = _config(config, "unet")
    converted = convert_ldm_unet_checkpoint(_meta(model, _UNET), settings)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(settings)
    return _compare("UNet", converted, unet.state_dict())


def _vae_problems(model: ModelFile, config: Path) -> list[str]:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    settings = _config(config, "vae")
    converted = convert_ldm_vae_checkpoint(_meta(model, _VAE), settings)
    with init_empty_weights():
        vae = AutoencoderKL.from_config(settings)
    return _compare("VAE", converted, vae.state_dict())


def _text_problems(model: ModelFile, config: Path, parts: Sequence[TextEncoderPart]) -> list[str]:
    """Width and context length of each text encoder (the sizes every layer follows)."""
    problems = []
    for part in parts:
        settings = _config(config, part.component)
        settings = settings.get("text_config", settings)
        for suffix, axis, key, what in (("token_embedding.weight", -1, "hidden_size", "width"),
                                        ("position_embedding.weight", 0, "max_position_embeddings", "context"),
                                        ("positional_embedding", 0, "max_position_embeddings", "context")):
            name = next((n for n in model.tensors if n.startswith(part.prefix) and n.endswith(suffix)), None)
            if name is None or key not in settings:
                continue
            found = model.tensors[name].shape[axis]
            if found != settings[key]:
                problems.append(f"the {part.component}'s {what} is {found} in the file ({name}) but "
                                f"{settings[key]} in the config")
    return problems
