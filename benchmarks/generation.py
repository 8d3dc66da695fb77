"""Generation overhead: ckptbench's generator against a bare diffusers pipeline call, measured in the same run.

    python benchmarks/generation.py [--images 16] [--repeats 3]
    python benchmarks/generation.py --real-size [--steps 4] [--repeats 2]     # several GiB: heavy-job lock

1. The tiny random SD1.5-architecture model on the CPU (64×64, Euler, 8 steps, batch 4): ckptbench's
   time per image (the whole ``generate()``: grouping, batches, checked decode, PIL images, infotext)
   over a bare ``pipeline(prompt=…, generator=…, output_type="np")`` loop with the same settings.
   Target ratio ≤ 1.10. The per-image cost is the slope between a one-batch run and an ``--images`` run,
   so the fixed cost of a checkpoint (load, warm-up, clean-up) is reported apart. Both wall time and
   this process's CPU time are reported: on a shared machine wall time also measures the neighbours,
   while the CPU time of a single-threaded run (``--cpu-threads 1``, the default) measures the work.
   Runs alternate between the two sides; medians over ``--repeats``.
2. ``--real-size``: an SD1.5-architecture single file of the real size with random weights (fp16 on disk,
   as Civitai files are; the cost of a forward pass does not depend on the weights' values) on the CPU at
   512×512, fp32, Euler, ``--steps`` steps, batch 1 and batch 4, torch's default threads. Each side runs in
   its own process (so its peak memory is its own), alternating: ckptbench (``DiffusersGenerator``, which
   resolves, checks and loads the file itself) and bare diffusers (``from_single_file`` with the same
   bundled config, then ``pipeline(...)``). Per batch size each side loads the file and makes the images;
   printed are the load time, the generation time per image (targets: ≤ 1.05× bare) and the peak RSS
   (target ≤ 1.2× bare). The GPU measurements are in ``gpu_check.py``.
"""

from __future__ import annotations

import argparse
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


def _print(title: str, numbers: dict[str, float]) -> None:
    print(f"\n{title}")
    for key, value in numbers.items():
        print(f"  {key:32s} {value:.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="images per measurement (tiny model)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu-threads", type=int, default=1,
                        help="torch threads on the CPU (tiny model); 1 makes CPU time a measure of the work")
    parser.add_argument("--real-size", action="store_true", help="real-size SD1.5 on the CPU (several GiB)")
    parser.add_argument("--steps", type=int, default=4, help="sampling steps (real size)")
    parser.add_argument("--work", type=Path, help="keep the real-size file here between invocations")
    args = parser.parse_args(argv)
    if args.real_size:
        from real_size_generation import real_size_main

        return real_size_main(args.steps, args.repeats, args.work)
    torch.set_num_threads(args.cpu_threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    with tempfile.TemporaryDirectory() as temporary:
        tiny_settings = SamplingSettings(sampler="Euler", steps=8, cfg=7.0, width=64, height=64, dtype="fp32")
        tiny = compare(tiny_model(Path(temporary)), tiny_settings, args.images, 4, args.repeats, torch.device("cpu"))
        _print("tiny SD1.5-architecture model, CPU, fp32, 64x64, Euler, 8 steps, batch 4 (target ratio <= 1.10)",
               tiny)
    return 0


if __name__ == "__main__":
    sys.exit(main())
