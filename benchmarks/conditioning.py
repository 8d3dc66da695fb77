"""Cost of ckptbench's A1111 conditioning against diffusers' own ``encode_prompt``, measured in one run.

A real-size SD1.5 text encoder (CLIP ViT-L/14 text tower, random weights: the cost of a forward pass does
not depend on the weights) encodes a batch of prompts and negative prompts both ways; the script prints
the time per batch and the ratio. Usage: ``python benchmarks/conditioning.py [--device cuda] [--repeats 20]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from diffusers import StableDiffusionPipeline
from transformers import CLIPTextConfig, CLIPTextModel

from ckptbench.demo.tiny import tiny_sd15_pipeline
from ckptbench.generate.conditioning import encode_prompts

SD15_TEXT = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
             "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": "quick_gelu", "projection_dim": 768}
PROMPTS = ["a lighthouse on a rocky coast at dusk, oil painting", "portrait of an old fisherman, 85mm",
           "cute corgi wearing a tiny crown, anime style", "isometric cozy reading room, low poly"]
NEGATIVES = ["lowres, bad anatomy, blurry"] * 4


def pipeline(device: torch.device, dtype: torch.dtype) -> StableDiffusionPipeline:
    tiny = tiny_sd15_pipeline()
    return StableDiffusionPipeline(
        unet=tiny.unet, vae=tiny.vae, text_encoder=CLIPTextModel(CLIPTextConfig(**SD15_TEXT)), tokenizer=tiny.tokenizer,
        scheduler=tiny.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).to(device, dtype)


def seconds(call: Callable[[], object], repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats + 2):  # two warm-up calls
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.inference_mode():
            call()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times[2:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    pipe = pipeline(device, dtype)
    baseline = seconds(lambda: pipe.encode_prompt(PROMPTS, device, 1, True, NEGATIVES), args.repeats, device)
    cases = {
        "plain prompts": (PROMPTS, NEGATIVES),
        "weighted prompts": ([f"({p}:1.2), [blurry]" for p in PROMPTS], NEGATIVES),
        "two-chunk prompts vs one-chunk negatives": ([", ".join([p] * 8) for p in PROMPTS], NEGATIVES),
    }
    print(f"device {device}, {dtype}; diffusers encode_prompt, batch of 4 + negatives: {baseline * 1000:.1f} ms")
    for label, (prompts, negatives) in cases.items():
        ours = seconds(lambda p=prompts, n=negatives: encode_prompts(pipe, p, n), args.repeats, device)
        print(f"ckptbench {label}: {ours * 1000:.1f} ms, ratio to diffusers plain {ours / baseline:.2f}")


if __name__ == "__main__":
    main()
