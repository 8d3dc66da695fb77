"""The GPU fast path: memory layout, compilation and batch size chosen per loaded pipeline, and recorded.

Nothing here enters an image key: like the device itself, these choices change which kernels compute the
same model (last-bit differences), not what is computed. What was chosen goes into provenance instead.

* Attention: diffusers uses PyTorch's scaled-dot-product attention (``AttnProcessor2_0``) by default on
  torch 2; ``attention_processors`` reports what each pipeline actually runs, so provenance shows it.
* ``channels_last`` for the UNet and VAE on CUDA, where cuDNN's convolutions are faster in that layout.
* ``torch.compile`` of the UNet when the spec asks for it (``[generation] compile = true``).
* The VAE: half-precision VAEs that overflow are handled by the checked decode (``decode.py``), which
  decodes broken images again in fp32; SDXL VAEs that ask for it (``force_upcast``) decode in fp32 from the
  start. ``vae_decode_dtype`` records which.
* ``batch_size = "auto"``: the largest batch whose estimated activation memory fits in 80 % of the GPU's
  free memory after loading the pipeline, between 1 and ``MAX_AUTO_BATCH``; on a CPU (or MPS) a fixed
  ``CPU_AUTO_BATCH``, because system memory is not the limit there and larger batches gain nothing.
"""

from __future__ import annotations

from typing import Any

import torch

from ckptbench.generate.batching import BatchSize

CPU_AUTO_BATCH = 4
MAX_AUTO_BATCH = 16
FREE_MEMORY_SHARE = 0.8


def denoiser(pipeline: Any) -> Any:
    """The pipeline's denoising network: the UNet, or the transformer of Flux and SD3.5."""
    unet = getattr(pipeline, "unet", None)
    return unet if unet is not None else pipeline.transformer


def attention_processors(pipeline: Any) -> list[str]:
    """The distinct attention processor classes of the pipeline's denoiser (e.g. ``AttnProcessor2_0`` = SDPA)."""
    processors = getattr(denoiser(pipeline), "attn_processors", {})
    return sorted({type(processor).__name__ for processor in processors.values()})


def apply_fast_path(pipeline: Any, device: torch.device, compile_unet: bool) -> dict[str, Any]:
    """Switch the loaded pipeline to the fast layout for ``device``; return what was done, for provenance."""
    channels_last = device.type == "cuda"
    network = denoiser(pipeline)
    channels_last = channels_last and network is getattr(pipeline, "unet", None)  # convolutions only
    if channels_last:
        pipeline.unet.to(memory_format=torch.channels_last)
        pipeline.vae.to(memory_format=torch.channels_last)
    if compile_unet and network is getattr(pipeline, "unet", None):
        pipeline.unet = torch.compile(pipeline.unet)
    elif compile_unet:
        pipeline.transformer = torch.compile(pipeline.transformer)
    return {"attention": attention_processors(pipeline), "channels_last": channels_last, "compiled": compile_unet,
            "weights_dtype": str(network.dtype).removeprefix("torch.")}


def vae_decode_dtype(pipeline: Any) -> str:
    from ckptbench.generate.decode import first_decode_dtype

    dtype = first_decode_dtype(pipeline)
    return str(dtype).removeprefix("torch.") + (" (fp32 retry of broken images)" if dtype != torch.float32 else "")


def estimated_bytes_per_image(family: str, width: int, height: int, dtype: torch.dtype) -> float:
    """The family's peak activation memory of one 512×512 half-precision image (with guidance and the VAE
    decode, measured with SDPA), scaled by the pixel count and the dtype's width."""
    from ckptbench.models.families import get_family

    bytes_per_value = torch.finfo(dtype).bits / 8
    return get_family(family).bytes_per_image_512 * (width * height) / 512**2 * bytes_per_value / 2


def choose_batch_size(requested: BatchSize, device: torch.device, family: str, width: int, height: int,
                      dtype: torch.dtype) -> int:
    """The batch size to use: the spec's number, or for 'auto' one chosen from free memory (see above).

    ``width`` and ``height`` are the largest size the batch reaches (the hires fix's upscaled size).
    """
    if requested != "auto":
        return int(requested)
    if device.type != "cuda":
        return CPU_AUTO_BATCH
    free, _total = torch.cuda.mem_get_info(device)
    fits = int(free * FREE_MEMORY_SHARE // estimated_bytes_per_image(family, width, height, dtype))
    return max(1, min(MAX_AUTO_BATCH, fits))
