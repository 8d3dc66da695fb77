"""How a whole run scales: the cost of adding a checkpoint, and peak memory against the number of images.

    PYTHONPATH=src python benchmarks/scale.py incremental [--prompts 4] [--seeds 16] [--repeats 3]
    PYTHONPATH=src python benchmarks/scale.py memory [--seeds 8] [--size 256]

``incremental``: a benchmark of 4 tiny random SD1.5-architecture checkpoints (64×64, Euler, 8 steps,
batch 4, two scorers on a tiny CLIP) runs from an empty store (T4), then the same benchmark with a fifth
checkpoint runs on that store (T+1: it generates and scores only the new checkpoint's images, and
rebuilds the results and the report for all five). The ratio T+1 ÷ (T4 ÷ 4) is the cost of the added
checkpoint against one checkpoint's share of the first run; target ≤ 1.15. Each repeat is its own
process, which first makes a warm-up run (imports, first loads) so that neither timed run pays them;
wall and CPU time (torch on 1 thread) are reported, medians over the repeats.

``memory``: the peak resident memory (max RSS) of a whole run (2 checkpoints, generation, scoring,
results and report) at N and at 4N images, each in its own process, on the local executor. Images are
written to the store as they come and scored in batches, so the peak should not grow with N.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_runs import build_models, spec_text, timed_run


def incremental_child(models: dict[str, Path], work: Path, prompts: int, seeds: int) -> dict[str, float]:
    warm = work / "warm.toml"
    warm.write_text(spec_text(models, work / "warm-store", 1, 1, 2))
    timed_run(warm)
    store = work / "store"
    four, five = work / "four.toml", work / "five.toml"
    four.write_text(spec_text(models, store, 4, prompts, seeds))
    five.write_text(spec_text(models, store, 5, prompts, seeds))
    first = timed_run(four)
    added = timed_run(five)
    assert first.generated == 4 * prompts * seeds and added.generated == prompts * seeds
    return {"t4_wall": first.wall_s, "t4_cpu": first.cpu_s, "t1_wall": added.wall_s, "t1_cpu": added.cpu_s}


def memory_child(models: dict[str, Path], work: Path, seeds: int, size: int) -> dict[str, float]:
    spec = work / "spec.toml"
    spec.write_text(spec_text(models, work / "store", 2, 4, seeds, size=size, steps=4))
    timed = timed_run(spec)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    return {"images": timed.generated, "peak_rss_mb": peak_mb, "wall_s": timed.wall_s, "cpu_s": timed.cpu_s}


def _spawn(args: list[str]) -> dict[str, float]:
    output = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("incremental", "memory"))
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=Path, help="internal: the models file of a measuring process")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    if args.child:
        models = {key: Path(value) for key, value in json.loads(args.child.read_text()).items()}
        with tempfile.TemporaryDirectory() as work:
            if args.what == "incremental":
                result = incremental_child(models, Path(work), args.prompts, args.seeds)
            else:
                result = memory_child(models, Path(work), args.seeds, args.size)
        print(json.dumps(result))
        return 0
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        models_file = root / "models.json"
        models = build_models(root / "models", 5)
        models_file.write_text(json.dumps({key: str(value) for key, value in models.items()}))
        common = ["--child", str(models_file), "--prompts", str(args.prompts), "--size", str(args.size)]
        if args.what == "incremental":
            runs = []
            for repeat in range(args.repeats):
                runs.append(_spawn(["incremental", *common, "--seeds", str(args.seeds)]))
                print(f"  repeat {repeat + 1}: {runs[-1]}", flush=True)
            median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
            ratios = {clock: statistics.median(run[f"t1_{clock}"] / (run[f"t4_{clock}"] / 4) for run in runs)
                      for clock in ("wall", "cpu")}
            print(f"\n4 checkpoints × {args.prompts * args.seeds} images, then a fifth (medians of {args.repeats}):")
            for clock in ("wall", "cpu"):
                print(f"  {clock:4s}: T4 {median[f't4_{clock}']:.2f} s (share {median[f't4_{clock}'] / 4:.2f} s), "
                      f"T+1 {median[f't1_{clock}']:.2f} s, ratio {ratios[clock]:.3f} (target <= 1.15)")
        else:
            for seeds in (args.seeds, 4 * args.seeds):
                result = _spawn(["memory", *common, "--seeds", str(seeds)])
                print(f"  {int(result['images'])} images of {args.size}x{args.size}: peak RSS "
                      f"{result['peak_rss_mb']:.0f} MB (wall {result['wall_s']:.1f} s, CPU {result['cpu_s']:.1f} s)",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
