"""Loading a resolved checkpoint into a diffusers pipeline, offline for local files.

Single files are built module by module from the tensors we read (after the safety checks) and the
family's config folder (bundled or the spec's), so nothing reaches for the hub; the family
(``ckptbench.models.families``) says which modules and which pipeline class. The scheduler always
carries the resolved prediction type, which every sampler built from it keeps.
"""

from __future__ import annotations

import json
from typing import Any

import diffusers
import torch
from diffusers import AutoencoderKL, DiffusionPipeline

from ckptbench.errors import CkptbenchError, ModelFileError
from ckptbench.models.checkpoint import BUNDLED_CONFIGS, ResolvedCheckpoint, ResolvedVae
from ckptbench.models.components import build_vae, normalise_text_keys, read_original_state
from ckptbench.models.families import get_family
from ckptbench.models.families.flow import TEXT_PREFIXES
from ckptbench.models.flow_parts import ResolvedTextEncoder, load_t5_tokenizer
from ckptbench.models.noise_schedule import zero_terminal_snr_config
from ckptbench.models.state_dict import load_tensors

__all__ = ["BUNDLED_CONFIGS", "Pipeline", "load_pipeline"]

Pipeline = DiffusionPipeline
_PREDICTION_TYPES = {"epsilon": "epsilon", "v": "v_prediction"}


def load_pipeline(checkpoint: ResolvedCheckpoint, device: torch.device, dtype: torch.dtype) -> Pipeline:
    """Load once per run; never reaches for the hub when the checkpoint is a local file or folder."""
    try:
        if checkpoint.kind == "single-file":
            pipeline = _from_single_file(checkpoint, dtype)
        else:
            pipeline = _from_folder(checkpoint, dtype)
    except CkptbenchError as error:
        raise ModelFileError(f"checkpoint '{checkpoint.name}': {error}") from None
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFileError(
            f"checkpoint '{checkpoint.name}': could not load {checkpoint.path} as {checkpoint.family} "
            f"({first_line[:300]}); check that the file is a complete {checkpoint.family} checkpoint, or set "
            "`arch` (and `config` for non-standard sizes) for it in the spec."
        ) from None
    pipeline.set_progress_bar_config(disable=True)
    pipeline = pipeline.to(device)
    if device.type == "cpu":
        _own_aligned_memory(pipeline)
    return pipeline


def _own_aligned_memory(pipeline: Pipeline) -> None:
    """Copy every weight out of the memory-mapped file into freshly allocated memory.

    Loaded weights point into the mapped file at whatever offset the file format put them, and CPU
    kernels round differently with differently aligned data: the same weights read from a single file
    and from a diffusers folder then gave images one grey level apart. Owned, aligned copies make the
    pixels depend on the weights alone (and free the process from the file once loaded).
    """
    with torch.no_grad():
        for module in pipeline.components.values():
            if isinstance(module, torch.nn.Module):
                for tensor in [*module.parameters(), *module.buffers()]:
                    tensor.data = tensor.data.clone()


def _from_single_file(checkpoint: ResolvedCheckpoint, dtype: torch.dtype) -> Pipeline:
    family = get_family(checkpoint.family)
    config = checkpoint.config_dir
    replaced = tuple(TEXT_PREFIXES[part.role] for part in checkpoint.text_encoders)
    state = read_original_state(checkpoint.path, checkpoint.allow_pickle, skip_vae=checkpoint.vae is not None,
                                skip=replaced)
    for part in checkpoint.text_encoders:
        state.update(_text_encoder_state(part))
    state = normalise_text_keys(state, checkpoint.family, config)
    modules: dict[str, Any] = family.build_modules(state, config, dtype)
    vae_state = family.vae_state(state)
    del state
    modules["vae"] = load_vae(checkpoint.vae, config, dtype) if checkpoint.vae else build_vae(vae_state, config, dtype)
    modules["scheduler"] = _scheduler(config, checkpoint.prediction, checkpoint.zero_terminal_snr)
    if checkpoint.t5_tokenizer is not None:
        modules["t5_tokenizer"] = load_t5_tokenizer(checkpoint.t5_tokenizer)
    return family.assemble(modules)


def _text_encoder_state(part: ResolvedTextEncoder) -> dict[str, torch.Tensor]:
    """A separate text-encoder file's tensors under the prefix a full checkpoint gives that encoder."""
    state = load_tensors(part.path, part.allow_pickle, how_to_allow="set allow_pickle = true for the checkpoint")
    prefix = TEXT_PREFIXES[part.role]
    return {prefix + name[len(part.key_prefix):]: state.pop(name) for name in list(state)
            if name.startswith(part.key_prefix)}


def _from_folder(checkpoint: ResolvedCheckpoint, dtype: torch.dtype) -> Pipeline:
    options: dict[str, Any] = {"local_files_only": True, "torch_dtype": dtype, "use_safetensors": True}
    if checkpoint.vae is not None:
        options["vae"] = load_vae(checkpoint.vae, checkpoint.path, dtype)
    if checkpoint.prediction == "flow":
        return get_family(checkpoint.family).load_folder(checkpoint.path, options)
    pipeline = get_family(checkpoint.family).load_folder(checkpoint.path, options)
    settings = _schedule_settings(dict(pipeline.scheduler.config), checkpoint.prediction,
                                  checkpoint.zero_terminal_snr)
    if settings != dict(pipeline.scheduler.config):
        pipeline.scheduler = type(pipeline.scheduler).from_config(settings)
    return pipeline


def load_vae(vae: ResolvedVae, config: Any, dtype: torch.dtype) -> AutoencoderKL:
    """An external VAE; a single file takes its architecture from the checkpoint's config folder."""
    if vae.kind == "diffusers-folder":
        return AutoencoderKL.from_pretrained(str(vae.path), local_files_only=True, torch_dtype=dtype,
                                             use_safetensors=True)
    state = load_tensors(vae.path, vae.allow_pickle, how_to_allow="set allow_pickle = true for the checkpoint")
    return build_vae(state, config, dtype)


def _scheduler(config: Any, prediction: str, zero_terminal_snr: bool) -> Any:
    settings = json.loads((config / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    scheduler_class = getattr(diffusers, settings.get("_class_name", "PNDMScheduler"))
    return scheduler_class.from_config(_schedule_settings(settings, prediction, zero_terminal_snr))


def _schedule_settings(settings: dict[str, Any], prediction: str, zero_terminal_snr: bool) -> dict[str, Any]:
    """The scheduler config with the resolved prediction type and, when on, the zero-terminal-SNR schedule
    (as ``trained_betas``, which every sampler made from this config keeps)."""
    if prediction == "flow":  # flow-matching schedulers have no prediction type to set
        return settings
    settings = {**settings, "prediction_type": _PREDICTION_TYPES[prediction]}
    return zero_terminal_snr_config(settings) if zero_terminal_snr else settings
