"""Per-image cost of the joint image–text scorers (ImageReward, VQAScore) against a CLIP ViT-L/14 image forward.

Real-size architectures with random weights (the cost of a forward pass does not depend on the weights'
values), each measured in its own process on the same 512×512 images, the baseline in the same run:

  clip-vit-l14     the CLIP ViT-L/14 image side of laion-aesthetic-v2 / clip-score: image processor, vision
                   tower, projection (what ``HFClipBackbone.embed_images`` runs per image)
  imagereward      ``ImageRewardBackbone.score_pairs``: BLIP ViT-L/16 at 224 px + BERT-base with
                   cross-attention + MLP (ImageReward v1.0's sizes)
  vqa-qwen2-vl-2b  ``VQABackbone.score_pairs`` on Qwen2-VL-2B-Instruct's architecture (vision 32 × 1280,
                   LM 28 × 1536, vocabulary 151,936), one question, one generated token
  vqa-qwen2.5-vl-7b  Qwen2.5-VL-7B-Instruct's architecture (the default model): its LM does not fit in this
                   machine's memory in float32, so it is measured with 1 and with 3 of its 28 decoder layers
                   and extrapolated linearly in the layer count (every layer costs the same)

Times are the median seconds per image over the repeats, in float32 on the CPU with all its threads. On a
shared CPU absolute times vary; the ratios to clip-vit-l14 are what the numbers are for.

    python benchmarks/joint_scorers.py                 # all of the above
    python benchmarks/joint_scorers.py --skip-7b       # without the (slow, ~10 GB) 7B measurement
    python benchmarks/joint_scorers.py --tiny          # smoke test with tiny models (seconds)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a photo of a red fox sitting in the snow beside a wooden fence, morning light"
VIT_L_14 = {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24,
            "image_size": 224, "patch_size": 14, "projection_dim": 768, "hidden_act": "quick_gelu"}
IMAGEREWARD_VISION = {"width": 1024, "blocks": 24, "patch": 16, "image_size": 224, "mlp": 4096}
IMAGEREWARD_TEXT = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                    "max_position_embeddings": 512, "vocab_size": 30524, "layer_norm_eps": 1e-12,
                    "hidden_act": "gelu", "pad_token_id": 0}
QWEN2_VL_2B = {"text": {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28,
                        "num_attention_heads": 12, "num_key_value_heads": 2, "vocab_size": 151936,
                        "tie_word_embeddings": True, "rope_theta": 1000000.0,
                        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}},
               "vision": {"depth": 32, "embed_dim": 1280, "num_heads": 16, "mlp_ratio": 4}}
QWEN25_VL_7B = {"text": {"hidden_size": 3584, "intermediate_size": 18944, "num_attention_heads": 28,
                         "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False,
                         "rope_theta": 1000000.0, "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}},
                "vision": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                           "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]}}
QWEN25_LAYERS = 28


def images(count: int, size: int) -> list[Any]:
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)) for _ in range(count)]


def timed(function: Any, inputs: list[Any]) -> list[tuple[float, float]]:
    """(wall, CPU) seconds of ``function`` on each input, after one warm-up call."""
    function(inputs[0])
    times = []
    for item in inputs:
        wall, cpu = time.perf_counter(), time.process_time()
        function(item)
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def measure_clip(repeats: int, size: int, tiny: bool) -> list[float]:
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    config = dict(VIT_L_14, **({"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                                "num_hidden_layers": 2} if tiny else {}))
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**config)).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})

    @torch.inference_mode()
    def forward(image: Any) -> None:
        model(pixel_values=processor(images=[image], return_tensors="pt")["pixel_values"])

    return timed(forward, images(repeats, size))


def measure_imagereward(repeats: int, size: int, tiny: bool) -> list[float]:
    import torch

    from ckptbench.demo.tiny_scorers import (
        TINY_IMAGEREWARD_VISION,
        TINY_MED_CONFIG,
        imagereward_model,
        save_tiny_wordpiece_tokenizer,
    )
    from ckptbench.metrics.imagereward_model import ImageRewardBackbone

    with tempfile.TemporaryDirectory() as folder:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(save_tiny_wordpiece_tokenizer(Path(folder)))
    vision, text = (TINY_IMAGEREWARD_VISION, {**TINY_MED_CONFIG, "vocab_size": 200}) if tiny else (
        IMAGEREWARD_VISION, IMAGEREWARD_TEXT)
    backbone = ImageRewardBackbone.from_model(imagereward_model(vision, text), tokenizer, torch.device("cpu"))
    return timed(lambda image: backbone.score_pairs([image], [PROMPT]), images(repeats, size))


def measure_qwen(repeats: int, size: int, tiny: bool, family: str, layers: int | None) -> list[float]:
    import torch

    from ckptbench.demo.tiny_vlm import qwen_vl_model, qwen_vl_processor
    from ckptbench.metrics.vqa_backbone import VQABackbone

    sizes = QWEN2_VL_2B if family == "qwen2_vl" else QWEN25_VL_7B
    text, vision = ({}, {}) if tiny else (dict(sizes["text"]), dict(sizes["vision"]))
    if layers is not None and not tiny:
        text["num_hidden_layers"] = layers
    with tempfile.TemporaryDirectory() as folder:
        processor = qwen_vl_processor(Path(folder), family)
    model = qwen_vl_model(processor, family, text=text, vision=vision)
    backbone = VQABackbone.from_model(model, processor, torch.device("cpu"))
    return timed(lambda image: backbone.score_pairs([image], [PROMPT]), images(repeats, size))


def measure(name: str, repeats: int, size: int, tiny: bool) -> dict[str, Any]:
    import torch

    if name == "clip-vit-l14":
        times = measure_clip(repeats, size, tiny)
    elif name == "imagereward":
        times = measure_imagereward(repeats, size, tiny)
    elif name == "vqa-qwen2-vl-2b":
        times = measure_qwen(repeats, size, tiny, "qwen2_vl", None)
    elif name.startswith("vqa-qwen2.5-vl-7b-layers"):
        times = measure_qwen(repeats, size, tiny, "qwen2_5_vl", int(name.rsplit("-", 1)[1]))
    else:
        raise SystemExit(f"unknown measurement {name}")
    return {"name": name, "seconds": [wall for wall, _ in times], "median": statistics.median(w for w, _ in times),
            "cpu_median": statistics.median(c for _, c in times), "threads": torch.get_num_threads()}


def run_child(name: str, repeats: int, size: int, tiny: bool) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", name, "--repeats", str(repeats),
               "--size", str(size)] + (["--tiny"] if tiny else [])
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3, help="images timed per model (after one warm-up)")
    parser.add_argument("--size", type=int, default=512, help="side of the square test images")
    parser.add_argument("--tiny", action="store_true", help="tiny models: a smoke test of this script")
    parser.add_argument("--skip-7b", action="store_true", help="leave out the Qwen2.5-VL-7B extrapolation")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.repeats, args.size, args.tiny)))
        return
    plan = [("clip-vit-l14", max(args.repeats, 5)), ("imagereward", args.repeats), ("vqa-qwen2-vl-2b", args.repeats)]
    if not args.skip_7b:
        plan += [("vqa-qwen2.5-vl-7b-layers-1", 1), ("vqa-qwen2.5-vl-7b-layers-3", 1)]
    results = {name: run_child(name, repeats, args.size, args.tiny) for name, repeats in plan}
    base_wall, base_cpu = results["clip-vit-l14"]["median"], results["clip-vit-l14"]["cpu_median"]
    rows = [(name, result["median"], result["cpu_median"], result["seconds"]) for name, result in results.items()]
    if not args.skip_7b:
        one, three = results["vqa-qwen2.5-vl-7b-layers-1"], results["vqa-qwen2.5-vl-7b-layers-3"]
        wall = one["median"] + (three["median"] - one["median"]) / 2 * (QWEN25_LAYERS - 1)
        cpu = one["cpu_median"] + (three["cpu_median"] - one["cpu_median"]) / 2 * (QWEN25_LAYERS - 1)
        rows.append(("vqa-qwen2.5-vl-7b (28 layers, extrapolated)", wall, cpu, []))
    print(f"{args.size}×{args.size} images, float32, CPU, {results['clip-vit-l14']['threads']} threads"
          + (" (tiny models)" if args.tiny else ""))
    print(f"{'model':46s} {'wall s/img':>10s} {'× CLIP':>7s} {'CPU s/img':>10s} {'× CLIP':>7s}  wall runs (s)")
    for name, wall, cpu, seconds in rows:
        runs = ", ".join(f"{value:.2f}" for value in seconds)
        print(f"{name:46s} {wall:10.3f} {wall / base_wall:7.1f} {cpu:10.3f} {cpu / base_cpu:7.1f}  {runs}")


if __name__ == "__main__":
    main()
