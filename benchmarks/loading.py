"""Checkpoint loading: ckptbench's safe, module-by-module loader against diffusers' own single-file loader.

Builds a tiny SD1.5-architecture single file (original layout), then loads it alternately with
``ckptbench.generate.loading.load_pipeline`` (header validation, detection, explicit configs) and with
``StableDiffusionPipeline.from_single_file`` (same config folder, offline), and prints the median times,
their ratio and whether both give identical weights. Run: ``python benchmarks/loading.py [repeats]``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from ckptbench.demo.tiny import save_config_folder, save_single_file, tiny_sd15_pipeline
from ckptbench.generate.loading import load_pipeline
from ckptbench.models.checkpoint import resolve_checkpoint
from ckptbench.models.tokenizer import clip_tokenizer
from ckptbench.spec import CheckpointSpec


def main(repeats: int = 5) -> None:
    with tempfile.TemporaryDirectory() as folder:
        pipeline = tiny_sd15_pipeline(seed=1)
        path = save_single_file(pipeline, Path(folder) / "tiny.safetensors")
        config = save_config_folder(pipeline, Path(folder) / "config")

        def ours() -> StableDiffusionPipeline:
            resolved = resolve_checkpoint(CheckpointSpec(name="tiny", path=path, config=config))
            return load_pipeline(resolved, torch.device("cpu"), torch.float32)

        def baseline() -> StableDiffusionPipeline:
            return StableDiffusionPipeline.from_single_file(
                str(path), config=str(config), local_files_only=True, torch_dtype=torch.float32,
                tokenizer=clip_tokenizer(), safety_checker=None, feature_extractor=None, requires_safety_checker=False)

        times: dict[str, list[float]] = {"ckptbench": [], "diffusers": []}
        for _ in range(repeats):  # interleaved, so load on the machine hits both alike
            for name, load in (("ckptbench", ours), ("diffusers", baseline)):
                started = time.perf_counter()
                load()
                times[name].append(time.perf_counter() - started)
        a, b = ours(), baseline()
        identical = all(torch.equal(x, y) for module in ("unet", "vae", "text_encoder")
                        for x, y in zip(getattr(a, module).state_dict().values(),
                                        getattr(b, module).state_dict().values(), strict=True))
    ours_s, base_s = statistics.median(times["ckptbench"]), statistics.median(times["diffusers"])
    print(f"median load time over {repeats}: ckptbench {ours_s:.3f} s, diffusers from_single_file {base_s:.3f} s, "
          f"ratio {ours_s / base_s:.2f}; identical weights: {identical}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
