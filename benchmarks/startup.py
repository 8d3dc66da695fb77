"""Start-up: how long each command takes as a user runs it (a whole process), and what `score` pays for imports.

Each command runs as its own process on the demo's tiny random models (so the work itself is small and the
time is start-up: interpreter, imports, reading the inputs), in rounds that alternate the commands;
printed are the median and range per command, next to floors measured in the same rounds:
``python -c pass`` (the interpreter), ``python -c "import torch"``, and the imports of any scorer built on
a transformers CLIP (torch, transformers' CLIPModel, CLIPImageProcessor and CLIPTokenizer; transformers
imports torch._dynamo and torchvision on the way).

The import overhead of ``ckptbench score`` is the time to import exactly the modules a real ``score`` run
ends with (recorded from a run, imported again in a fresh process, in the same order), less the bare
interpreter: everything a scoring process imports before and while it works, but none of the work.

    python benchmarks/startup.py              # 5 rounds
    python benchmarks/startup.py --rounds 9
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

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"scorers": 1.5, "validate": 2.0, "score (imports)": 3.0}

# What any scorer on a transformers CLIP imports, ckptbench or not: the floor of a scoring process.
FLOOR = ("import numpy, torch, PIL.Image\nfrom transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer\n"
         "CLIPModel.__init__, CLIPImageProcessor.__init__, CLIPTokenizer.__init__")

PROBE = """
import json, sys
from ckptbench.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
print("MODULES " + json.dumps(list(sys.modules)))
"""


def environment(cache: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"), "CKPTBENCH_CACHE_DIR": str(cache)}


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}")
    return seconds


def set_up(work: Path) -> dict[str, list[str]]:
    """The demo's tiny models and spec, 8 images with prompts, and the command lines to time."""
    import numpy as np
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from ckptbench.demo.command import build_demo_models, write_demo_spec

    build_demo_models(work / "models")
    spec = write_demo_spec(work)
    images = work / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for index in range(8):
        info = PngInfo()
        info.add_text("parameters", f"a lighthouse number {index}\nSteps: 8, Sampler: Euler a, CFG scale: 7, "
                                    f"Seed: {index}, Size: 512x512")
        pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((512, 512)).save(images / f"{index}.png", pnginfo=info)
    scorers = work / "scorers.toml"
    scorers.write_text('[scorers]\nuse = ["laion-aesthetic-v2", "clip-score"]\n'
                       f'[scorers.laion-aesthetic-v2]\nmodel = "{work}/models/tiny-clip"\n'
                       f'head = "{work}/models/tiny-aesthetic-head.pth"\n'
                       f'[scorers.clip-score]\nmodel = "{work}/models/tiny-clip"\n')
    return {
        "--help": ["--help"],
        "scorers": ["scorers"],
        "validate": ["validate", str(spec)],
        "import infotext": ["import", "infotext", str(images), "--out", str(work / "suite.toml")],
        "inspect": ["inspect", str(work / "models" / "tiny-a.safetensors")],
        "run --dry-run": ["run", str(spec), "--dry-run"],
        "score": ["score", str(images), "--spec", str(scorers), "--out", str(work / "scores.csv")],
    }


def score_modules(command: list[str], env: dict[str, str], work: Path) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *command], env=env, cwd=work, capture_output=True, text=True)
    line = next(line for line in done.stdout.splitlines() if line.startswith("MODULES "))
    return [name for name in json.loads(line[len("MODULES "):]) if name != "__main__"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    with tempfile.TemporaryDirectory(prefix="ckptbench-startup-") as scratch:
        work = Path(scratch)
        commands = set_up(work)
        env = environment(work / "cache")
        modules = score_modules(commands["score"], env, work)
        importer = work / "import_score_modules.py"
        importer.write_text(f"import importlib\nfor name in {json.dumps(modules)}:\n    try:\n"
                            "        importlib.import_module(name)\n    except Exception:\n        pass\n")
        ckptbench = [sys.executable, "-m", "ckptbench"]
        lines = {"python -c pass": [sys.executable, "-c", "pass"],
                 "python -c 'import torch'": [sys.executable, "-c", "import torch"],
                 "floor: transformers CLIP": [sys.executable, "-c", FLOOR],
                 **{name: [*ckptbench, *command] for name, command in commands.items()},
                 "score (imports)": [sys.executable, str(importer)]}
        times: dict[str, list[float]] = {name: [] for name in lines}
        timed(lines["score"], env, work)  # warm the page cache and the machine digest cache
        for _ in range(args.rounds):
            for name, line in lines.items():
                times[name].append(timed(line, env, work))

    interpreter = statistics.median(times["python -c pass"])
    print(f"\nWhole-process wall time per command (tiny demo models; median [range] of {args.rounds} rounds)\n")
    print(f"{'command':28} {'median s':>9} {'range s':>15} {'target':>8}")
    for name, values in times.items():
        values = [value - interpreter for value in values] if name == "score (imports)" else values
        target = f"< {TARGETS[name]:g}" if name in TARGETS else ""
        print(f"{name:28} {statistics.median(values):9.2f} {min(values):7.2f}–{max(values):<7.2f} {target:>8}")
    print(f"\n'score (imports)': importing the {len(modules)} modules a `score` run ends with, less the bare "
          f"interpreter ({interpreter:.2f} s).")


if __name__ == "__main__":
    main()
