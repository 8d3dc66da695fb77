"""Shared by the run-level benchmarks (scale.py, ray_executor.py): tiny random checkpoints, a spec over them,
one timed ``run_benchmark`` call, and the CPU time of a process tree (Ray's workers are not our children)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

PROMPTS = ("a lighthouse on a rocky coast at dusk, oil painting", "portrait of an old fisherman, photograph",
           "cute corgi wearing a tiny crown, anime style", "isometric cozy reading room, low poly",
           "a bowl of ramen, studio lighting", "a red fox in fresh snow, watercolor",
           "a cyberpunk street at night, neon", "a medieval castle on a hill, matte painting")


def build_models(root: Path, checkpoints: int) -> dict[str, Path]:
    """``checkpoints`` different tiny SD1.5-architecture diffusers folders, a tiny CLIP and an aesthetic head."""
    from ckptbench.demo.tiny import (
        save_diffusers_folder,
        save_tiny_aesthetic_head,
        save_tiny_clip,
        tiny_sd15_pipeline,
    )

    models = {f"ckpt{index}": save_diffusers_folder(tiny_sd15_pipeline(seed=index + 1), root / f"ckpt{index}")
              for index in range(checkpoints)}
    models["clip"] = save_tiny_clip(root / "clip", seed=100)
    models["head"] = save_tiny_aesthetic_head(root / "head.pth", seed=101)
    return models


def spec_text(models: dict[str, Path], store: Path, checkpoints: int, prompts: int, seeds: int, *, size: int = 64,
              steps: int = 8, batch_size: int = 4, extra_benchmark: str = "") -> str:
    """A spec over the first ``checkpoints`` tiny models: ``prompts`` × ``seeds`` images each, two scorers."""
    parts = [f'[benchmark]\nname = "bench"\nstore = "{store}"\n{extra_benchmark}\n']
    for index in range(checkpoints):
        parts.append(f'[[checkpoints]]\nname = "ckpt{index}"\npath = "{models[f"ckpt{index}"]}"\n')
    parts.append(f'[generation]\nsampler = "Euler"\nsteps = {steps}\nwidth = {size}\nheight = {size}\n'
                 f'seeds = {{from = 1, to = {seeds}}}\nbatch_size = {batch_size}\n')
    listed = ", ".join(f'"{prompt}"' for prompt in (PROMPTS * (prompts // len(PROMPTS) + 1))[:prompts])
    parts.append(f'[[suites]]\nname = "quality"\nprompts = [{listed}]\n')
    parts.append(f'[scorers]\nuse = ["laion-aesthetic-v2", "clip-score"]\n[scorers.laion-aesthetic-v2]\n'
                 f'model = "{models["clip"]}"\nhead = "{models["head"]}"\n[scorers.clip-score]\n'
                 f'model = "{models["clip"]}"\n')
    return "\n".join(parts)


@dataclass
class Timed:
    wall_s: float
    cpu_s: float  # this process, or the whole process tree when measured with tree_cpu_seconds
    generated: int
    scored: int


def tree_cpu_seconds(root: int | None = None) -> float:
    """User + system CPU seconds of a process and every living descendant (from /proc)."""
    root = root or os.getpid()
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks

    def descends(pid: int) -> bool:
        while pid > 1:
            if pid == root:
                return True
            pid = parents.get(pid, 0)
        return False

    return sum(seconds for pid, seconds in cpu.items() if descends(pid))


def timed_run(spec_path: Path, executor: str = "local", whole_tree: bool = False) -> Timed:
    """One ``run_benchmark`` of the spec, quiet; wall and CPU seconds (of this process, or its whole tree)."""
    from rich.console import Console

    from ckptbench.runner import run_benchmark
    from ckptbench.spec_load import load_spec

    spec = load_spec(spec_path)
    clock = tree_cpu_seconds if whole_tree else time.process_time
    wall, cpu = time.perf_counter(), clock()
    outcome = run_benchmark(spec, console=Console(quiet=True), executor=executor)  # type: ignore[arg-type]
    wall, cpu = time.perf_counter() - wall, clock() - cpu
    if outcome.failed_checkpoints:
        raise RuntimeError(f"checkpoints failed: {outcome.failed_checkpoints}")
    return Timed(wall, cpu, outcome.generated, outcome.scored)
