"""Scoring as a user runs it: whole processes, ckptbench against one bare forward pass and against separate tools.

Scores N images (512×512 PNGs, a prompt each in a sidecar .txt) with ``clip-score`` + ``laion-aesthetic-v2``
on a real-size CLIP ViT-L/14 (transformers layout, random weights: the cost of a forward pass does not
depend on the weights' values; the real LAION head when ``../shared/data/weights`` is beside the checkout),
fp32 on the CPU. Every measurement is one whole process, start to exit (interpreter, imports, model load,
work, output), timed from outside; CPU time and peak memory are that process's own (``wait4``):

  bare       the floor: import torch + transformers, load CLIPModel and its image processor once, decode,
             preprocess and embed every image in batches of 16 (``get_image_features``); nothing else;
  ckptbench  ``ckptbench score IMAGES --spec both.toml`` with a fresh temporary store (what a user types);
  separate   two single-scorer tools: ``ckptbench score`` with ``clip-score`` only, then with
             ``laion-aesthetic-v2`` only (each loads CLIP and embeds every image);
  run stage  the scoring stage of ``ckptbench run`` (tiny random checkpoint making the N images at 512×512,
             same scorers): its backbone load + scoring time, as the run records it.

Weights are hashed once per file per machine: the first ckptbench process (with an empty machine digest
cache) hashes the 1.7 GB weights file and is reported apart; every later one finds the digest in the cache,
which the script shows by the bytes each process read (loading maps the weights file; hashing reads it).
Rounds alternate bare / ckptbench / separate; medians and ranges are printed.

    python benchmarks/scoring.py                    # N = 32, 3 rounds (about 15 minutes on 2 CPU cores)
    python benchmarks/scoring.py --tiny --rounds 1  # smoke test with a tiny CLIP (seconds, not meaningful)
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
SCORERS = ("clip-score", "laion-aesthetic-v2")
BATCH = 16


# --- set-up ------------------------------------------------------------------------------------------

def build_model(folder: Path, tiny: bool) -> Path:
    if tiny:
        from ckptbench.demo.tiny import save_tiny_clip

        return folder if (folder / "model.safetensors").is_file() else save_tiny_clip(folder, seed=0)
    from real_size import clip_vit_l_14

    return clip_vit_l_14(folder)


def head_file(work: Path) -> Path:
    real = REPO.parent / "shared" / "data" / "weights" / "sac+logos+ava1-l14-linearMSE.pth"
    if real.is_file():
        return real
    from ckptbench.demo.tiny import save_tiny_aesthetic_head

    return save_tiny_aesthetic_head(work / "head.pth", seed=0)


def scorers_toml(names: tuple[str, ...], model: Path, head: Path) -> str:
    lines = ["[scorers]", f"use = {json.dumps(list(names))}"]
    for name in names:
        lines += [f"[scorers.{name}]", f"model = {json.dumps(str(model))}", f"batch_size = {BATCH}"]
        if name == "laion-aesthetic-v2":
            lines.append(f"head = {json.dumps(str(head))}")
    return "\n".join(lines) + "\n"


def write_run_spec(work: Path, checkpoint: Path, config: Path, model: Path, head: Path, count: int, size: int) -> Path:
    prompts = [f"a photograph of object number {i}, detailed" for i in range(8)]
    seeds = max(1, count // len(prompts))
    text = (f'[benchmark]\nname = "scoring stage"\nstore = "run-store"\n\n[[checkpoints]]\nname = "tiny"\n'
            f"path = {json.dumps(str(checkpoint))}\nconfig = {json.dumps(str(config))}\n\n"
            f'[generation]\nsampler = "Euler"\nsteps = 2\nwidth = {size}\nheight = {size}\n'
            f"seeds = {{from = 1, to = {seeds}}}\nbatch_size = 4\n\n"
            f'[[suites]]\nname = "quality"\nprompts = {json.dumps(prompts)}\n\n' + scorers_toml(SCORERS, model, head))
    path = work / "run.toml"
    path.write_text(text)
    return path


# --- one whole process, measured from outside ------------------------------------------------------------

def measure(command: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Wall, CPU and peak memory of one process; a JSON object it prints last is merged in."""
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        output.seek(0)
        text = output.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{text[-3000:]}")
    result = {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime, "max_rss_mb": usage.ru_maxrss / 1024}
    last = text.strip().splitlines()[-1] if text.strip() else ""
    return result | (json.loads(last) if last.startswith("{") else {})


# `ckptbench …` as a user runs it, plus one last line: the bytes the process read through read() (a mapped
# file, as model loading uses, does not count; hashing a file reads it), from /proc/self/io.
CKPTBENCH_READING = """
import json, sys
from ckptbench.cli import app
try:
    app()
except SystemExit as stop:
    code = stop.code
else:
    code = 0
read = next(int(line.split()[1]) for line in open("/proc/self/io") if line.startswith("rchar"))
print(json.dumps({"read_mb": read / 2**20}))
sys.exit(code)
"""


def environment(cache: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
            "CKPTBENCH_CACHE_DIR": str(cache)}


def bare_child(model: str, images: str) -> None:
    """The floor, run as its own process: imports, one model load, decode + preprocess + forward."""
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPModel

    started = time.perf_counter()
    clip = CLIPModel.from_pretrained(model).eval()
    processor = CLIPImageProcessor.from_pretrained(model)
    files = sorted(Path(images).glob("*.png"))
    with torch.inference_mode():
        for start in range(0, len(files), BATCH):
            batch = [Image.open(f).convert("RGB") for f in files[start : start + BATCH]]
            clip.get_image_features(pixel_values=processor(images=batch, return_tensors="pt")["pixel_values"])
    print(json.dumps({"load_and_forward": time.perf_counter() - started}))


def cached_digest(cache: Path, weights: Path) -> str | None:
    import sqlite3

    if not (cache / "digests.sqlite").is_file():  # the tiny model is below the machine cache's size limit
        return None
    with sqlite3.connect(cache / "digests.sqlite") as db:
        row = db.execute("SELECT sha256 FROM file_digests WHERE path = ?", (str(weights.resolve()),)).fetchone()
    return row[0] if row else None


def run_stage_seconds(store: Path) -> float:
    """Backbone load + scoring of the run's last scoring stage, as the run recorded it."""
    import sqlite3

    with sqlite3.connect(store / "ckptbench.sqlite") as db:
        row = db.execute("SELECT seconds + fixed_seconds FROM throughput WHERE stage = 'score' "
                         "ORDER BY run_id DESC LIMIT 1").fetchone()
    return float(row[0])


# --- the benchmark -------------------------------------------------------------------------------------

def summary(values: list[float]) -> str:
    return f"{statistics.median(values):8.2f}  [{min(values):.2f}–{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32, help="N, the number of images")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of bare / ckptbench / separate")
    parser.add_argument("--tiny", action="store_true", help="a tiny CLIP instead of ViT-L/14 (smoke test)")
    parser.add_argument("--no-run-stage", action="store_true", help="skip the scoring stage of `ckptbench run`")
    parser.add_argument("--work", type=Path, help="keep models and images here between invocations")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from real_size import random_images

    with tempfile.TemporaryDirectory(prefix="ckptbench-bench-") as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        model = build_model(work / ("clip-tiny" if args.tiny else "clip-vit-l-14"), args.tiny)
        weights = model / "model.safetensors"
        head = head_file(work)
        images = random_images(work / f"images-{args.images}", args.images)
        specs = {label: work / f"{label}.toml" for label in ("both", *SCORERS)}
        specs["both"].write_text(scorers_toml(SCORERS, model, head))
        for name in SCORERS:
            specs[name].write_text(scorers_toml((name,), model, head))
        cache = Path(scratch) / "machine-cache"  # empty: the first ckptbench process hashes the weights
        env = environment(cache)
        ckptbench = [sys.executable, "-c", CKPTBENCH_READING, "score", str(images), "--out",
                     str(work / "scores.csv"), "--spec"]
        bare = [sys.executable, __file__, "--child-bare", str(model), str(images)]

        first = measure([*ckptbench, str(specs["both"])], env, work)
        digest = cached_digest(cache, weights)
        weights_mb = weights.stat().st_size / 2**20
        results: dict[str, list[dict[str, float]]] = {"bare": [], "ckptbench": [], "separate": []}
        for _ in range(args.rounds):
            results["bare"].append(measure(bare, env, work))
            results["ckptbench"].append(measure([*ckptbench, str(specs["both"])], env, work))
            parts = [measure([*ckptbench, str(specs[name])], env, work) for name in SCORERS]
            results["separate"].append({key: sum(part[key] for part in parts) for key in ("seconds", "cpu")}
                                       | {"max_rss_mb": max(part["max_rss_mb"] for part in parts)})
        stage = None if args.no_run_stage else measure_run_stage(work, model, head, args.images, env)

    label = "a tiny CLIP" if args.tiny else "CLIP ViT-L/14 (real size, random weights)"
    print(f"\nScoring {args.images} images (512×512 PNG) with {' + '.join(SCORERS)} on {label}, CPU fp32, "
          f"torch threads: default; whole processes; median [range] of {args.rounds} round(s)\n")
    print(f"{'process':44} {'wall s':>24} {'CPU s':>24} {'peak RSS MB':>12}")
    for name, runs in results.items():
        print(f"{name:44} {summary([r['seconds'] for r in runs]):>24} {summary([r['cpu'] for r in runs]):>24} "
              f"{statistics.median(r['max_rss_mb'] for r in runs):12.0f}")
    ratios = {key: [c[key] / b[key] for c, b in zip(results["ckptbench"], results["bare"], strict=True)]
              for key in ("seconds", "cpu")}
    separate = {key: [s[key] / c[key] for s, c in zip(results["separate"], results["ckptbench"], strict=True)]
                for key in ("seconds", "cpu")}
    print(f"\nckptbench ÷ bare (target ≤ 1.15):     wall {summary(ratios['seconds'])}   CPU {summary(ratios['cpu'])}")
    print(f"separate ÷ ckptbench (target ≥ 1.9):  wall {summary(separate['seconds'])}  CPU {summary(separate['cpu'])}")
    later = [r["read_mb"] for r in results["ckptbench"]]
    print(f"\nweights digest cache ({weights.name}, {weights_mb:.0f} MiB; loading maps the file, hashing reads it): "
          f"the first ckptbench process, with an empty machine cache, read {first['read_mb']:.0f} MiB through "
          f"read() and took {first['cpu']:.1f} CPU s; the later ones read {min(later):.0f}–{max(later):.0f} MiB. "
          + (f"The cache holds {digest[:16]}… for the file." if digest else
             "The cache holds nothing: the tiny model is below its 16 MiB limit."))
    if stage is not None:
        print(f"run's scoring stage: {stage['stage']:.2f} s (backbone load + scoring, as the run records it) against "
              f"{stage['bare']:.2f} s of model load + decode + preprocess + forward inside the bare process just "
              f"before: {stage['stage'] / stage['bare']:.3f}× (target ≤ 1.15)")


def measure_run_stage(work: Path, model: Path, head: Path, count: int, env: dict[str, str]) -> dict[str, float]:
    """`ckptbench run` on a tiny checkpoint making the images, real-size scorers; the stage as the run records it,
    against the bare process's own load + forward time (both without interpreter start and imports)."""
    from ckptbench.demo.tiny import save_config_folder, save_single_file, tiny_sd15_pipeline

    checkpoint = work / "tiny-sd15.safetensors"
    config = work / "tiny-sd15-config"
    if not checkpoint.is_file():
        pipeline = tiny_sd15_pipeline(seed=1)
        save_single_file(pipeline, checkpoint)
        save_config_folder(pipeline, config)
    spec = write_run_spec(work, checkpoint, config, model, head, count, 512)
    store = work / "run-store"
    if store.exists():
        import shutil

        shutil.rmtree(store)
    bare = measure([sys.executable, __file__, "--child-bare", str(model), str(work / f"images-{count}")], env, work)
    measure([sys.executable, "-m", "ckptbench", "run", str(spec)], env, work)
    return {"stage": run_stage_seconds(store), "bare": bare["load_and_forward"]}


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-bare":
        bare_child(sys.argv[2], sys.argv[3])
    else:
        main()
