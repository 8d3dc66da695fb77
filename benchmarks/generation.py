"""Generation overhead: ckptbench's generator against a bare diffusers pipeline call, measured in the same run.

    python benchmarks/generation.py [--images 16] [--repeats 3]

1. The tiny random SD1.5-architecture model on the CPU (64×64, Euler, 8 steps, batch 4): ckptbench's
   time per image (the whole ``generate()``: grouping, batches, checked decode, PIL images, infotext)
   over a bare ``pipeline(prompt=…, generator=…, output_type="np")`` loop with the same settings.
   Target ratio ≤ 1.10. The per-image cost is the slope between a one-batch run and an ``--images`` run,
   so the fixed cost of a checkpoint (load, warm-up, clean-up) is reported apart. Both wall time and
   this process's CPU time are reported: on a shared machine wall time also measures the neighbours,
   while the CPU time of a single-threaded run (``--cpu-threads 1``, the default) measures the work.
   Runs alternate between the two sides; medians over ``--repeats``.
2. With a CUDA GPU: a real-size SD1.5-architecture checkpoint with random weights (the cost of a forward
   pass does not depend on the weights' values) at 512×512, 20 steps, fp16, batch 4: images per second of
   ckptbench and of a bare diffusers loop. Skipped on a machine without CUDA.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ckptbench.generate.base import ImageJob, SamplingSettings
from ckptbench.generate.batching import backend_id
from ckptbench.generate.diffusers_backend import DiffusersGenerator
from ckptbench.generate.loading import load_pipeline
from ckptbench.generate.samplers import make_scheduler
from ckptbench.models.checkpoint import ResolvedCheckpoint, resolve_checkpoint
from ckptbench.spec import CheckpointSpec
from ckptbench.suites import Case

PROMPTS = ("a lighthouse on a rocky coast at dusk, oil painting", "portrait of an old fisherman, photograph",
           "cute corgi wearing a tiny crown, anime style", "isometric cozy reading room, low poly")


def _jobs(ckpt: ResolvedCheckpoint, settings: SamplingSettings, count: int) -> list[ImageJob]:
    return [ImageJob(checkpoint=ckpt.name, checkpoint_sha256=ckpt.sha256,
                     case=Case("bench", f"{i:03d}", PROMPTS[i % len(PROMPTS)]), seed=i,
                     prompt=PROMPTS[i % len(PROMPTS)], negative_prompt="", settings=settings, backend=backend_id())
            for i in range(count)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(work: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``work``."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def _bare_loop(pipeline: object, jobs: list[ImageJob], batch_size: int) -> None:
    """Plain diffusers calls with the settings ckptbench uses."""
    settings = jobs[0].settings
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        with torch.inference_mode():
            pipeline(prompt=[job.prompt for job in batch],  # type: ignore[operator]
                     negative_prompt=[job.negative_prompt for job in batch], num_inference_steps=settings.steps,
                     guidance_scale=settings.cfg, width=settings.width, height=settings.height, output_type="np",
                     generator=[torch.Generator("cpu").manual_seed(job.seed) for job in batch])


def _ckptbench(ckpt: ResolvedCheckpoint, jobs: list[ImageJob], batch_size: int, device: torch.device) -> None:
    results = list(DiffusersGenerator(device, batch_size).generate(ckpt, jobs))
    failed = [result for result in results if not hasattr(result, "seconds")]
    if failed:
        raise RuntimeError(f"{len(failed)} images failed: {failed[0]}")


def compare(ckpt: ResolvedCheckpoint, settings: SamplingSettings, images: int, batch_size: int, repeats: int,
            device: torch.device) -> dict[str, float]:
    """Per-image cost of both sides, and ckptbench's fixed cost per checkpoint, from two run lengths.

    Each side runs ``batch_size`` and ``images`` images; the difference divided by the extra images is
    the steady per-image cost (the slope), what is left of the short run is the fixed cost: for
    ckptbench the pipeline load, warm-up and the memory clean-up after a checkpoint; for the bare loop,
    on a freshly loaded pipeline whose load is not timed, the warm-up.
    """
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[settings.dtype]
    jobs = _jobs(ckpt, settings, images)

    def fresh_pipeline() -> object:
        pipeline = load_pipeline(ckpt, device, dtype)
        pipeline.scheduler = make_scheduler(settings.sampler, dict(pipeline.scheduler.config))
        return pipeline

    def bare(count: int) -> tuple[float, float]:
        pipeline = fresh_pipeline()
        return _timed(lambda: _bare_loop(pipeline, jobs[:count], batch_size), device)

    def ours(count: int) -> tuple[float, float]:
        return _timed(lambda: _ckptbench(ckpt, jobs[:count], batch_size, device), device)

    bare(batch_size)  # warm-up: kernels, allocator, file cache
    ours(batch_size)
    extra = images - batch_size
    rows: dict[str, list[float]] = {}
    for _ in range(repeats):  # alternate, so a busy machine slows both sides alike
        for side, measure in (("bare", bare), ("ckptbench", ours)):
            short, long = measure(batch_size), measure(images)
            for clock, index in (("wall", 0), ("cpu", 1)):
                slope = (long[index] - short[index]) / extra
                rows.setdefault(f"{side}_{clock}_s_per_image", []).append(slope)
                rows.setdefault(f"{side}_{clock}_s_fixed", []).append(short[index] - batch_size * slope)
    result = {key: statistics.median(values) for key, values in rows.items()}
    for clock in ("wall", "cpu"):
        result[f"ratio_{clock}_per_image"] = (result[f"ckptbench_{clock}_s_per_image"]
                                              / result[f"bare_{clock}_s_per_image"])
    result["images_per_s_bare"] = 1 / result["bare_wall_s_per_image"]
    result["images_per_s_ckptbench"] = 1 / result["ckptbench_wall_s_per_image"]
    return result


def tiny_model(root: Path) -> ResolvedCheckpoint:
    from ckptbench.demo.tiny import save_diffusers_folder, tiny_sd15_pipeline

    folder = save_diffusers_folder(tiny_sd15_pipeline(seed=1), root / "tiny")
    return resolve_checkpoint(CheckpointSpec(name="tiny", path=folder))


def real_size_sd15(root: Path) -> ResolvedCheckpoint:
    """SD1.5's real architecture (bundled configs) with random weights, saved as an fp16 diffusers folder."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from ckptbench.models.tokenizer import clip_tokenizer

    configs = Path(__file__).resolve().parents[1] / "src" / "ckptbench" / "models" / "configs" / "sd15"

    def config(part: str) -> dict[str, object]:
        return json.loads((configs / part / "config.json").read_text())

    torch.manual_seed(0)
    text_config = {k: v for k, v in config("text_encoder").items() if k != "architectures"}
    pipeline = StableDiffusionPipeline(
        unet=UNet2DConditionModel.from_config(config("unet")), vae=AutoencoderKL.from_config(config("vae")),
        text_encoder=CLIPTextModel(CLIPTextConfig(**text_config)), tokenizer=clip_tokenizer(),
        scheduler=PNDMScheduler.from_config(json.loads((configs / "scheduler" / "scheduler_config.json").read_text())),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    folder = root / "sd15-random"
    pipeline.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    return resolve_checkpoint(CheckpointSpec(name="sd15-random", path=folder))


def _print(title: str, numbers: dict[str, float]) -> None:
    print(f"\n{title}")
    for key, value in numbers.items():
        print(f"  {key:32s} {value:.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="images per measurement (tiny model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu-images", type=int, default=16, help="images per measurement (real size, GPU)")
    parser.add_argument("--cpu-threads", type=int, default=1,
                        help="torch threads on the CPU; 1 makes CPU time a measure of the work on a shared machine")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.cpu_threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        tiny_settings = SamplingSettings(sampler="Euler", steps=8, cfg=7.0, width=64, height=64, dtype="fp32")
        tiny = compare(tiny_model(root), tiny_settings, args.images, 4, args.repeats, torch.device("cpu"))
        _print("tiny SD1.5-architecture model, CPU, fp32, 64x64, Euler, 8 steps, batch 4 (target ratio <= 1.10)",
               tiny)
        if not torch.cuda.is_available():
            print("\nreal-size SD1.5 on GPU: skipped (no CUDA device)")
            return 0
        real_settings = SamplingSettings(sampler="Euler", steps=20, cfg=7.0, width=512, height=512, dtype="fp16")
        real = compare(real_size_sd15(root), real_settings, args.gpu_images, 4, args.repeats, torch.device("cuda"))
        _print(f"real-size SD1.5 architecture, random weights, {torch.cuda.get_device_name(0)}, fp16, 512x512, "
               "Euler, 20 steps, batch 4", real)
    return 0


if __name__ == "__main__":
    sys.exit(main())
