"""``generation.py --real-size``: real-size SD1.5 on the CPU, ckptbench against bare diffusers, each in its own process.

See ``generation.py`` for what is measured. The children print one JSON line; the parent alternates them.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BATCHES = (1, 4)
PROMPTS = ("a lighthouse on a rocky coast at dusk, oil painting", "portrait of an old fisherman, photograph",
           "cute corgi wearing a tiny crown, anime style", "isometric cozy reading room, low poly")
CFG = 7.0
SIZE = 512


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    wall, cpu = _clock()
    return wall - start[0], cpu - start[1]


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_bare(path: Path, steps: int) -> dict[str, float]:
    """diffusers alone: ``from_single_file`` with ckptbench's bundled SD1.5 config, then ``pipeline(...)``."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from ckptbench.models.tokenizer import clip_tokenizer

    result: dict[str, float] = {}
    for batch in BATCHES:
        start = _clock()
        pipeline = StableDiffusionPipeline.from_single_file(
            str(path), config=str(REPO / "src" / "ckptbench" / "models" / "configs" / "sd15"), local_files_only=True,
            torch_dtype=torch.float32, tokenizer=clip_tokenizer(), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False)
        # the UNet work of ckptbench's Euler: one call per step on the same timesteps
        pipeline.scheduler = EulerDiscreteScheduler.from_config(pipeline.scheduler.config, timestep_spacing="linspace")
        pipeline.set_progress_bar_config(disable=True)
        result[f"load_b{batch}"], _ = _since(start)
        begin = _clock()
        with torch.inference_mode():
            pipeline(prompt=list(PROMPTS[:batch]), negative_prompt=[""] * batch, num_inference_steps=steps,
                     guidance_scale=CFG, width=SIZE, height=SIZE, output_type="np",
                     generator=[torch.Generator("cpu").manual_seed(seed) for seed in range(batch)])
        result[f"generate_b{batch}"], _ = _since(begin)
        result[f"total_b{batch}"], result[f"total_cpu_b{batch}"] = _since(start)
        del pipeline
    return result | {"peak_rss_mb": _peak_rss_mb()}


def child_ckptbench(path: Path, steps: int) -> dict[str, float]:
    """ckptbench: resolve the file (digest from the machine cache, detection), then ``DiffusersGenerator``."""
    import torch

    from ckptbench.generate.base import FailedImage, ImageJob, SamplingSettings
    from ckptbench.generate.batching import backend_id
    from ckptbench.generate.diffusers_backend import DiffusersGenerator
    from ckptbench.models.checkpoint import resolve_checkpoint
    from ckptbench.spec import CheckpointSpec
    from ckptbench.suites import Case

    settings = SamplingSettings(sampler="Euler", steps=steps, cfg=CFG, width=SIZE, height=SIZE, dtype="fp32")
    result: dict[str, float] = {}
    for batch in BATCHES:
        start = _clock()
        resolved = resolve_checkpoint(CheckpointSpec(name="sd15", path=path))
        jobs = [ImageJob(checkpoint=resolved.name, checkpoint_sha256=resolved.sha256,
                         case=Case("bench", f"{seed:03d}", PROMPTS[seed]), seed=seed, prompt=PROMPTS[seed],
                         negative_prompt="", settings=settings, backend=backend_id()) for seed in range(batch)]
        generator = DiffusersGenerator(torch.device("cpu"), batch)
        began = _clock()
        made = list(generator.generate(resolved, jobs))
        generated = _since(began)
        total = _since(start)
        # Random weights at real size can overflow for some seeds: ckptbench then reports the image as failed
        # (bare diffusers returns its NaN pixels); the work done is the same, so it is timed all the same.
        failed = [image.error for image in made if isinstance(image, FailedImage)]
        if any("NaN" not in error for error in failed):
            raise RuntimeError(f"images failed: {failed}")
        result[f"failed_b{batch}"] = len(failed)
        load = float(generator.runtime["load_seconds"])
        result[f"load_b{batch}"] = load
        result[f"generate_b{batch}"] = generated[0] - load
        result[f"total_b{batch}"], result[f"total_cpu_b{batch}"] = total
    return result | {"peak_rss_mb": _peak_rss_mb()}


def _child(side: str, path: Path, steps: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, __file__, side, str(path), str(steps)], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise SystemExit(f"{side} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):8.2f} [{min(values):.2f}–{max(values):.2f}]"


def real_size_main(steps: int, repeats: int, work: Path | None) -> int:
    import torch

    sys.path.insert(0, str(REPO / "src"))
    from real_size import single_file

    with tempfile.TemporaryDirectory(prefix="ckptbench-gen-") as scratch:
        folder = work or Path(scratch)
        started = time.perf_counter()
        path = single_file("sd15", folder)
        print(f"SD1.5 real-size random-weight single file: {path.stat().st_size / 2**30:.2f} GiB "
              f"(made in {time.perf_counter() - started:.0f} s)", flush=True)
        runs: dict[str, list[dict[str, float]]] = {"bare": [], "ckptbench": []}
        _child("ckptbench", path, 1)  # warm-up: page cache, the file's digest in the machine cache
        for _ in range(repeats):
            for side in runs:
                runs[side].append(_child(side, path, steps))
                print(f"  {side}: {json.dumps({k: round(v, 2) for k, v in runs[side][-1].items()})}", flush=True)

    print(f"\nReal-size SD1.5 architecture (random weights, fp16 file loaded as fp32), CPU, {torch.get_num_threads()} "
          f"torch threads, {SIZE}×{SIZE}, Euler, {steps} steps, CFG {CFG:g}; median [range] of {repeats}\n")
    print(f"{'':34} {'bare diffusers':>22} {'ckptbench':>22} {'ratio':>7}")
    rows = [("load s (from_single_file vs ours)", "load_b1", 1)]
    for batch in BATCHES:
        rows += [(f"batch {batch}: generation s / image", f"generate_b{batch}", batch),
                 (f"batch {batch}: load + generation, wall s", f"total_b{batch}", 1),
                 (f"batch {batch}: load + generation, CPU s", f"total_cpu_b{batch}", 1)]
    rows.append(("peak RSS MB", "peak_rss_mb", 1))
    for label, key, per in rows:
        bare = [run[key] / per for run in runs["bare"]]
        ours = [run[key] / per for run in runs["ckptbench"]]
        ratios = [a / b for a, b in zip(ours, bare, strict=True)]
        print(f"{label:34} {_summary(bare):>22} {_summary(ours):>22} {statistics.median(ratios):7.3f}")
    print("\ntargets: generation per image ≤ 1.05× bare; peak RSS ≤ 1.2× bare")
    return 0


if __name__ == "__main__":
    side, file, step_count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    numbers = (child_bare if side == "bare" else child_ckptbench)(file, step_count)
    print(json.dumps(numbers))
