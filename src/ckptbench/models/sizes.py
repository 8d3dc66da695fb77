"""Do a single file's tensor sizes fit the config folder it will be built with?

Checked from the safetensors header alone (names and shapes; no weight is read, no model library is
imported, so ``validate`` and a dry run stay light): the sizes every other tensor follows — the UNet's
channels per level, its input/output channels, time-embedding and cross-attention widths; the VAE's first
and last widths and latent channels; each text encoder's width, context length and layer count; a flow
transformer's (Flux, SD3.5) width, input channels, text widths and block counts — are compared with the
config's. A model that needs ``config`` differs in at least one of them, and is named
before any weights are loaded, in one sentence, instead of a loader's error deep inside the run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ckptbench.models.families.unet import TextEncoderPart
    from ckptbench.models.state_dict import ModelFile

_UNET, _VAE = "model.diffusion_model.", "first_stage_model."
_SHAPE_ERROR = re.compile(r"(?P<name>[\w.]+) expected shape torch\.Size\(\[(?P<want>[\d, ]*)\]\), but got "
                          r"torch\.Size\(\[(?P<got>[\d, ]*)\]\)")
_RESNET_OUT = re.compile(re.escape(_UNET) + r"input_blocks\.(\d+)\.0\.out_layers\.3\.weight$")
_TEXT_LAYER = re.compile(r"(?:encoder\.layers|transformer\.resblocks)\.(\d+)\.")

Check = tuple[str, str, str, Any, Any]  # module, what, tensor name, size in the file, size in the config


def unet_checkpoint_size_problem(model: ModelFile, config: Path, text_parts: Sequence[TextEncoderPart],
                                 baked_vae: bool) -> str | None:
    """The first way the file's text encoders, UNet or (``baked_vae``) VAE differ in size from ``config``,
    naming the module, the size, the tensor and both values, with a count of the others; None: they fit."""
    checks = [*_text_checks(model, config, text_parts), *_unet_checks(model, config)]
    if baked_vae:
        checks += _vae_checks(model, config)
    return _first_problem(checks)


def _first_problem(checks: Sequence[Check]) -> str | None:
    problems = [f"the {module}'s {what} is {found} in the file ({name}) but {expected} in the config"
                for module, what, name, found, expected in checks if found != expected]
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more size(s) differ)" if len(problems) > 1 else ""
    return problems[0] + more


def transformer_size_problem(model: ModelFile, config: Path, tensors: Sequence[tuple[str, int, str, tuple[str, ...]]],
                             blocks: Sequence[tuple[str, str, str]]) -> str | None:
    """The first way a flow transformer (Flux, SD3.5; original names, bare or under ``model.diffusion_model.``)
    differs in size from ``config``'s transformer: widths from the named tensors, block counts from the highest
    block index; None: they fit. Text encoders and VAE are checked when they are built."""
    settings = _config(config, "transformer")
    t = model.tensors
    checks: list[Check] = []
    for suffix, axis, what, keys in tensors:
        name = next((n for n in (_UNET + suffix, suffix) if n in t), None)
        if name is None or not all(isinstance(settings.get(key), int) for key in keys):
            continue
        expected = 1
        for key in keys:
            expected *= settings[key]
        checks.append(("transformer", what, name, t[name].shape[axis], expected))
    for prefix, what, key in blocks:
        pattern = re.compile(rf"^(?:{re.escape(_UNET)})?{re.escape(prefix)}\.(\d+)\.")
        indices = {int(match[1]) for name in t if (match := pattern.match(name))}
        if indices and isinstance(settings.get(key), int):
            checks.append(("transformer", what, f"{prefix}.*", max(indices) + 1, settings[key]))
    return _first_problem(checks)


def describe_load_error(error: BaseException) -> str:
    """A loader's error as one whole phrase: a size mismatch as "tensor X is A in the file, B in the config",
    anything else as its first sentence, never cut mid-word."""
    text = str(error).strip()
    match = _SHAPE_ERROR.search(text)
    if match:
        return (f"tensor {match['name']} is {_shape(match['got'])} in the file but {_shape(match['want'])} in the "
                "config")
    first = text.splitlines()[0] if text else type(error).__name__
    return re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0].rstrip(".")


def _shape(numbers: str) -> str:
    return "×".join(v.strip() for v in numbers.split(",") if v.strip()) or "a scalar"


def _config(config: Path, component: str) -> dict[str, Any]:
    path = config / component / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _levels(widths: Sequence[int]) -> list[int]:
    """Channel widths per level, repeats merged (SD1.5's last two levels are both 1280 wide)."""
    return [width for index, width in enumerate(widths) if index == 0 or widths[index - 1] != width]


def _unet_checks(model: ModelFile, config: Path) -> Iterator[Check]:
    settings = _config(config, "unet")
    t = model.tensors
    blocks = list(settings.get("block_out_channels") or [])
    conv_in = t.get(_UNET + "input_blocks.0.0.weight")
    if conv_in is not None and len(conv_in.shape) == 4 and blocks:
        name = _UNET + "input_blocks.0.0.weight"
        yield "UNet", "first block width", name, conv_in.shape[0], blocks[0]
        yield "UNet", "input channels", name, conv_in.shape[1], settings.get("in_channels", conv_in.shape[1])
    resnets = sorted((int(m[1]), t[name].shape[0]) for name in t if (m := _RESNET_OUT.match(name)))
    if resnets and blocks:
        yield ("UNet", "widths per level", _UNET + "input_blocks.*.0.out_layers.3.weight",
               _levels([width for _, width in resnets]), _levels(blocks))
    conv_out = t.get(_UNET + "out.2.weight")
    if conv_out is not None and "out_channels" in settings:
        yield "UNet", "output channels", _UNET + "out.2.weight", conv_out.shape[0], settings["out_channels"]
    to_k = next((name for name in t if name.startswith(_UNET) and name.endswith("attn2.to_k.weight")), None)
    cross = settings.get("cross_attention_dim")
    if to_k is not None and isinstance(cross, int):
        yield "UNet", "cross-attention width", to_k, t[to_k].shape[-1], cross
    label = t.get(_UNET + "label_emb.0.0.weight")
    if label is not None and "projection_class_embeddings_input_dim" in settings:
        yield ("UNet", "size-and-crop conditioning width", _UNET + "label_emb.0.0.weight", label.shape[-1],
               settings["projection_class_embeddings_input_dim"])


def _vae_checks(model: ModelFile, config: Path) -> Iterator[Check]:
    settings = _config(config, "vae")
    t = model.tensors
    blocks = list(settings.get("block_out_channels") or [])
    for name, what, axis, expected in (
            ("encoder.conv_in.weight", "first block width", 0, blocks[0] if blocks else None),
            ("encoder.mid.block_1.conv1.weight", "last block width", 0, blocks[-1] if blocks else None),
            ("quant_conv.weight", "latent channels (×2)", 0, 2 * settings["latent_channels"]
             if "latent_channels" in settings else None),
            ("decoder.conv_out.weight", "output channels", 0, settings.get("out_channels"))):
        info = t.get(_VAE + name)
        if info is not None and expected is not None and info.shape:
            yield "VAE", what, _VAE + name, info.shape[axis], expected


def _text_checks(model: ModelFile, config: Path, parts: Sequence[TextEncoderPart]) -> Iterator[Check]:
    for part in parts:
        settings = _config(config, part.component)
        settings = settings.get("text_config", settings)
        names = [name for name in model.tensors if name.startswith(part.prefix)]
        for suffix, axis, key, what in (("token_embedding.weight", -1, "hidden_size", "width"),
                                        ("position_embedding.weight", 0, "max_position_embeddings", "context length"),
                                        ("positional_embedding", 0, "max_position_embeddings", "context length")):
            name = next((n for n in names if n.endswith(suffix)), None)
            if name is not None and key in settings:
                yield part.component, what, name, model.tensors[name].shape[axis], settings[key]
        layers = {int(match[1]) for name in names if (match := _TEXT_LAYER.search(name[len(part.prefix):]))}
        wanted = settings.get("num_hidden_layers")
        if layers and isinstance(wanted, int) and len(layers) < wanted:  # more is fine: SD2 skips its last layer
            yield part.component, "layer count", f"{part.prefix}…layers.*", len(layers), wanted
