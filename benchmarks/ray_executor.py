"""Ray executor on one machine against the local executor: its overhead, and its speed-up with 2 workers.

    PYTHONPATH=src python benchmarks/ray_executor.py [--checkpoints 2] [--prompts 4] [--seeds 8] [--repeats 3]

The same benchmark (tiny random SD1.5-architecture checkpoints, 64×64, Euler, 8 steps, batch 4; the tiny
CLIP's two scorers) runs from an empty store under four configurations, each in its own process:

* ``local``: the default executor, torch on 1 thread (the baseline);
* ``local-2-threads``: the default executor with torch on 2 threads (intra-op parallelism, for comparison);
* ``ray-1``: ``ray.init(num_cpus=1)``: one task at a time, so the ratio to ``local`` is Ray's overhead
  (task submission, moving jobs out and PNG bytes back, the driver replaying the writes); target ≤ 1.3;
* ``ray-2``: ``ray.init(num_cpus=2)``: two tasks at once (one per checkpoint shard), the speed-up.

Each process first makes a small warm-up run (imports, first model load, Ray's worker start), then times
``--repeats`` runs on fresh stores. Wall time and CPU time are reported: for Ray the CPU time of the whole
process tree (driver, Ray's services and its workers), read from /proc. On a machine shared with others
the wall time also measures the neighbours; the CPU time measures the work. Ray's start (``ray.init``)
is reported apart: a long benchmark pays it once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_runs import build_models, spec_text, timed_run

CONFIGS = ("local", "local-2-threads", "ray-1", "ray-2")


def child(config: str, models_file: Path, work: Path, args: argparse.Namespace) -> dict[str, float]:
    import torch

    models = {key: Path(value) for key, value in json.loads(models_file.read_text()).items()}
    torch.set_num_threads(2 if config == "local-2-threads" else 1)
    executor = "ray" if config.startswith("ray") else "local"
    result: dict[str, float] = {}
    if executor == "ray":
        import ray

        src = str(Path(__file__).resolve().parents[1] / "src")
        started = time.perf_counter()
        ray.init(num_cpus=int(config[-1]), include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get(
                     "PYTHONPATH")])), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}})
        result["ray_init_s"] = time.perf_counter() - started
    warm = work / "warm.toml"
    warm.write_text(spec_text(models, work / "warm-store", args.checkpoints, 1, 1))
    started = time.perf_counter()
    timed_run(warm, executor, whole_tree=executor == "ray")
    result["warm_up_s"] = time.perf_counter() - started
    walls, cpus = [], []
    for repeat in range(args.inner):
        spec = work / f"spec-{repeat}.toml"
        spec.write_text(spec_text(models, work / f"store-{repeat}", args.checkpoints, args.prompts, args.seeds))
        timed = timed_run(spec, executor, whole_tree=executor == "ray")
        assert timed.generated == args.checkpoints * args.prompts * args.seeds
        walls.append(timed.wall_s)
        cpus.append(timed.cpu_s)
    result["wall_s"] = statistics.median(walls)
    result["cpu_s"] = statistics.median(cpus)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="processes per configuration (alternating)")
    parser.add_argument("--inner", type=int, default=1, help="timed runs within each process")
    parser.add_argument("--child", choices=CONFIGS)
    parser.add_argument("--models", type=Path)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.models, args.work, args)))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    images = args.checkpoints * args.prompts * args.seeds
    print(f"{args.checkpoints} checkpoints × {args.prompts} prompts × {args.seeds} seeds = {images} images; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        models = build_models(root / "models", args.checkpoints)
        models_file = root / "models.json"
        models_file.write_text(json.dumps({key: str(value) for key, value in models.items()}))
        results: dict[str, list[dict[str, float]]] = {config: [] for config in CONFIGS}
        for repeat in range(args.repeats):  # alternate, so a busy machine slows every configuration alike
            for config in CONFIGS:
                work = root / f"{config}-{repeat}"
                work.mkdir()
                command = [sys.executable, __file__, "--child", config, "--models", str(models_file), "--work",
                           str(work), "--checkpoints", str(args.checkpoints), "--prompts", str(args.prompts),
                           "--seeds", str(args.seeds), "--inner", str(args.inner)]
                output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                results[config].append(json.loads(output.strip().splitlines()[-1]))
                print(f"  {config} #{repeat + 1}: {results[config][-1]}", flush=True)
    summary = {config: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
               for config, runs in results.items()}
    print(f"\nload average after: {os.getloadavg()[0]:.1f}\n")
    print(f"{'configuration':18s} {'wall s':>8s} {'CPU s':>8s} {'wall ÷ local':>13s} {'CPU ÷ local':>12s}")
    base = summary["local"]
    for config, numbers in summary.items():
        print(f"{config:18s} {numbers['wall_s']:8.2f} {numbers['cpu_s']:8.2f} "
              f"{numbers['wall_s'] / base['wall_s']:13.2f} {numbers['cpu_s'] / base['cpu_s']:12.2f}")
    for config in ("ray-1", "ray-2"):
        print(f"{config}: ray.init {summary[config]['ray_init_s']:.1f} s, warm-up run "
              f"{summary[config]['warm_up_s']:.1f} s (local warm-up {base['warm_up_s']:.1f} s)")
    print(f"\nRay overhead (ray-1 ÷ local), target ≤ 1.3: wall {summary['ray-1']['wall_s'] / base['wall_s']:.2f}, "
          f"CPU {summary['ray-1']['cpu_s'] / base['cpu_s']:.2f}")
    print(f"speed-up with 2 workers (local ÷ ray-2): wall {base['wall_s'] / summary['ray-2']['wall_s']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
