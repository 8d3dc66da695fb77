"""The GPU check: one command, one table. Run it on a CUDA machine (it needs no files and no network):

    python benchmarks/gpu_check.py                 # CUDA: real sizes; meant to fit in 8 minutes on an H100
    python benchmarks/gpu_check.py --no-compile    # without the torch.compile rows (most of the time)
    python benchmarks/gpu_check.py --tiny          # CPU: tiny models through the same code (a CI smoke test)

Generation: the real-size SD1.5 (512×512) and SDXL (1024×1024) architectures with random weights, made on
the fly (the cost of a forward pass does not depend on the weights' values), written as fp16 single files
and loaded by ckptbench as a user's file would be; 20 steps, Euler, CFG 7, fp16, ``batch_size = "auto"``,
without and with ``torch.compile`` of the UNet. Against each: a bare diffusers loop in the same process
(``pipeline(prompt=…, output_type="pil")`` on the same modules, the batch size ckptbench chose, the same
memory layout and compilation). Throughput counts the batches after the first (the first one warms up and,
with compile, compiles; its time is shown apart).

Scoring: a real-size CLIP ViT-L/14 (``clip-score`` + ``laion-aesthetic-v2``, transformers) and open_clip
ViT-H/14 (``hps-v2``), random weights, fp16, over 512×512 PNGs: ``score_folder`` with a fresh store against
a bare loop (decode, preprocess, forward, one batch at a time), both including the model load.

Columns: images/s of ckptbench and of the bare loop, their ratio (ckptbench ÷ bare throughput; 1.0 = no
overhead), the peak GPU memory of each (``torch.cuda.max_memory_allocated``; on a CPU: –).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

PROMPTS = ("a lighthouse on a rocky coast at dusk, oil painting", "portrait of an old fisherman, photograph, 85mm",
           "cute corgi wearing a tiny crown, anime style", "isometric cozy reading room, low poly, pastel colours")
CFG = 7.0
TIME_LIMIT_S = 8 * 60


@dataclass
class Row:
    what: str
    ours_per_s: float
    bare_per_s: float
    ours_peak_gb: float | None
    bare_peak_gb: float | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.ours_per_s / self.bare_per_s


@dataclass
class Setup:
    device: torch.device
    tiny: bool
    work: Path
    steps: int
    images: dict[str, int]  # images per generation measurement, per family (three batches or so)
    score_images: int
    score_batch: int

    @property
    def dtype(self) -> str:
        return "fp16" if self.device.type == "cuda" else "fp32"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# --- generation ------------------------------------------------------------------------------------------

def generation_model(family: str, setup: Setup) -> tuple[Any, Path, Path | None]:
    """(bare pipeline on the CPU, its single file, the config folder a tiny file needs)."""
    if setup.tiny:
        from ckptbench.demo.tiny import save_config_folder, save_single_file, tiny_sd15_pipeline, tiny_sdxl_pipeline

        pipeline = tiny_sdxl_pipeline(seed=1) if family == "sdxl" else tiny_sd15_pipeline(seed=1)
        path = save_single_file(pipeline, setup.work / f"{family}-tiny.safetensors")
        return pipeline, path, save_config_folder(pipeline, setup.work / f"{family}-tiny-config")
    from real_size import random_pipeline, save_single_file

    pipeline = random_pipeline(family, setup.device)
    path = save_single_file(pipeline, setup.work / f"{family}-random.safetensors")
    return pipeline.to("cpu"), path, None


def _jobs(resolved: Any, family: str, size: int, setup: Setup) -> list[Any]:
    from ckptbench.generate.base import ImageJob, SamplingSettings
    from ckptbench.generate.batching import backend_id
    from ckptbench.suites import Case

    settings = SamplingSettings(sampler="Euler", steps=setup.steps, cfg=CFG, width=size, height=size,
                                dtype=setup.dtype)
    return [ImageJob(checkpoint=resolved.name, checkpoint_sha256=resolved.sha256,
                     case=Case("gpu-check", f"{i:03d}", PROMPTS[i % len(PROMPTS)]), seed=i,
                     prompt=PROMPTS[i % len(PROMPTS)], negative_prompt="", settings=settings, backend=backend_id())
            for i in range(setup.images[family])]


def _steady(batches: list[tuple[int, float]]) -> tuple[float, float]:
    """(images per second over the batches after the first, seconds of the first batch)."""
    rest = batches[1:] or batches
    return sum(n for n, _ in rest) / sum(s for _, s in rest), batches[0][1]


def ckptbench_generation(resolved: Any, jobs: list[Any], compiled: bool, setup: Setup) -> tuple[list, dict, float]:
    from ckptbench.generate.base import GeneratedImage
    from ckptbench.generate.diffusers_backend import DiffusersGenerator

    _reset_peak(setup.device)
    generator = DiffusersGenerator(setup.device, "auto", compile_unet=compiled)
    seconds = []  # per image: its batch's time ÷ the batch's images, in batch order
    for image in generator.generate(resolved, jobs):
        if not isinstance(image, GeneratedImage):
            raise RuntimeError(f"ckptbench failed an image: {image}")
        seconds.append(image.seconds)
    _sync(setup.device)
    batch = int(generator.runtime["batch_size"])
    batches = [(len(seconds[i : i + batch]), sum(seconds[i : i + batch])) for i in range(0, len(seconds), batch)]
    return batches, generator.runtime, _peak_gb(setup.device) or 0.0


def bare_generation(pipeline: Any, jobs: list[Any], batch: int, compiled: bool, setup: Setup) -> tuple[list, float]:
    from ckptbench.generate.samplers import make_scheduler

    _reset_peak(setup.device)
    dtype = torch.float16 if setup.dtype == "fp16" else torch.float32
    pipeline = pipeline.to(setup.device, dtype)
    pipeline.scheduler = make_scheduler("Euler", dict(pipeline.scheduler.config))
    pipeline.set_progress_bar_config(disable=True)
    unet = pipeline.unet
    if setup.device.type == "cuda":  # the layout ckptbench's fast path uses on CUDA
        pipeline.unet.to(memory_format=torch.channels_last)
        pipeline.vae.to(memory_format=torch.channels_last)
    if compiled:
        pipeline.unet = torch.compile(pipeline.unet)
    settings = jobs[0].settings
    batches = []
    try:
        for start in range(0, len(jobs), batch):
            chunk = jobs[start : start + batch]
            began = time.perf_counter()
            with torch.inference_mode():
                pipeline(prompt=[job.prompt for job in chunk], negative_prompt=[""] * len(chunk),
                         num_inference_steps=settings.steps, guidance_scale=CFG, width=settings.width,
                         height=settings.height, output_type="pil",
                         generator=[torch.Generator("cpu").manual_seed(job.seed) for job in chunk])
            _sync(setup.device)
            batches.append((len(chunk), time.perf_counter() - began))
    finally:
        pipeline.unet = unet
        pipeline.to("cpu")
    return batches, _peak_gb(setup.device) or 0.0


def generation_rows(family: str, size: int, setup: Setup, compile_modes: tuple[bool, ...]) -> list[Row]:
    from ckptbench.models.checkpoint import resolve_checkpoint
    from ckptbench.spec import CheckpointSpec

    pipeline, path, config = generation_model(family, setup)
    resolved = resolve_checkpoint(CheckpointSpec(name=family, path=path, config=config))
    jobs = _jobs(resolved, family, size, setup)
    rows = []
    for compiled in compile_modes:
        ours, runtime, ours_peak = ckptbench_generation(resolved, jobs, compiled, setup)
        torch._dynamo.reset()  # let the compiled UNet and its GPU memory go
        bare, bare_peak = bare_generation(pipeline, jobs, int(runtime["batch_size"]), compiled, setup)
        torch._dynamo.reset()
        (ours_rate, ours_first), (bare_rate, bare_first) = _steady(ours), _steady(bare)
        label = f"{family} {size}² {setup.steps} steps {setup.dtype}{' compiled' if compiled else ''}"
        rows.append(Row(label, ours_rate, bare_rate, ours_peak if setup.device.type == "cuda" else None,
                        bare_peak if setup.device.type == "cuda" else None,
                        f"batch {runtime['batch_size']}; first batch {ours_first:.1f} s / {bare_first:.1f} s; "
                        f"load {runtime['load_seconds']:.1f} s",
                        {"runtime": {k: v for k, v in runtime.items() if k != "attention"}}))
        print(f"  {rows[-1].what}: {ours_rate:.3f} vs {bare_rate:.3f} images/s", flush=True)
    del pipeline
    return rows


# --- scoring ---------------------------------------------------------------------------------------------

def scoring_models(setup: Setup) -> dict[str, dict[str, Any]]:
    """ViT-L/14 (transformers) and ViT-H/14 (open_clip) scorer set-ups: spec options and a bare forward."""
    if setup.tiny:
        from ckptbench.demo.tiny import save_tiny_aesthetic_head, save_tiny_clip
        from ckptbench.demo.tiny_scorers import save_hps_style_checkpoint, save_tiny_open_clip

        clip = save_tiny_clip(setup.work / "clip", seed=3)
        head = save_tiny_aesthetic_head(setup.work / "head.pth", seed=4)
        architecture = save_tiny_open_clip(setup.work / "open-clip", seed=11)
        hps = save_hps_style_checkpoint(architecture, setup.work / "hps.pt", seed=12)
        open_clip_model = str(architecture)
    else:
        from real_size import clip_vit_l_14, open_clip_vit_h_14

        clip = clip_vit_l_14(setup.work / "clip-vit-l-14", setup.device)
        real_head = HERE.parents[1] / "shared" / "data" / "weights" / "sac+logos+ava1-l14-linearMSE.pth"
        if real_head.is_file():
            head = real_head
        else:
            from ckptbench.demo.tiny import save_tiny_aesthetic_head

            head = save_tiny_aesthetic_head(setup.work / "head.pth", seed=4)
        hps = open_clip_vit_h_14(setup.work / "vit-h-14.safetensors", setup.device)
        open_clip_model = "ViT-H-14"
    common = {"dtype": setup.dtype, "batch_size": setup.score_batch}
    return {
        "ViT-L/14 (clip-score + laion-aesthetic-v2)": {
            "use": ["clip-score", "laion-aesthetic-v2"],
            "options": {"clip-score": {"model": str(clip), **common},
                        "laion-aesthetic-v2": {"model": str(clip), "head": str(head), **common}},
            "bare": lambda: _bare_hf_clip(clip, setup)},
        "ViT-H/14 (hps-v2)": {
            "use": ["hps-v2"], "options": {"hps-v2": {"model": open_clip_model, "head": str(hps), **common}},
            "bare": lambda: _bare_open_clip(open_clip_model, hps, setup)},
    }


def _bare_hf_clip(folder: Path, setup: Setup) -> Callable[[list[Any]], Any]:
    from transformers import CLIPImageProcessor, CLIPModel

    dtype = torch.float16 if setup.dtype == "fp16" else torch.float32
    model = CLIPModel.from_pretrained(folder, torch_dtype=dtype).eval().to(setup.device)
    processor = CLIPImageProcessor.from_pretrained(folder)
    return lambda images: model.get_image_features(
        pixel_values=processor(images=images, return_tensors="pt")["pixel_values"].to(setup.device, dtype))


def _bare_open_clip(architecture: str, checkpoint: Path, setup: Setup) -> Callable[[list[Any]], Any]:
    import open_clip

    from ckptbench.metrics.open_clip_backbone import load_checkpoint_state

    dtype = torch.float16 if setup.dtype == "fp16" else torch.float32
    name = f"local-dir:{architecture}" if Path(architecture).is_dir() else architecture
    model = open_clip.create_model(name, load_weights=False)
    model.load_state_dict(load_checkpoint_state(checkpoint))
    model = model.eval().to(setup.device, dtype)
    size = model.visual.image_size
    transform = open_clip.image_transform(size[0] if isinstance(size, tuple) else size, is_train=False)
    return lambda images: model.encode_image(torch.stack([transform(i) for i in images]).to(setup.device, dtype))


def scoring_rows(setup: Setup) -> list[Row]:
    from PIL import Image
    from real_size import random_images

    from ckptbench.hashing import sha256_file
    from ckptbench.score_folder import score_folder
    from ckptbench.spec import ScorersSpec
    from ckptbench.store import Store

    images = random_images(setup.work / "images", setup.score_images, size=64 if setup.tiny else 512)
    files = sorted(images.glob("*.png"))
    # Imported before the clock starts on either side (the bare loop runs second and would find them loaded).
    import ckptbench.metrics.aesthetic
    import ckptbench.metrics.clip_score
    import ckptbench.metrics.hf_clip
    import ckptbench.metrics.open_clip_backbone
    import ckptbench.metrics.preference  # noqa: F401

    rows = []
    for label, model in scoring_models(setup).items():
        spec = ScorersSpec.model_validate({"use": model["use"], **model["options"]})
        for options in model["options"].values():  # weights are hashed once per machine: not part of the timing
            for key in ("model", "head"):
                if Path(options.get(key, "")).is_file():
                    sha256_file(Path(options[key]))
                for weights in Path(options.get(key, "")).glob("*.safetensors"):
                    sha256_file(weights)
        _reset_peak(setup.device)
        began = time.perf_counter()
        with tempfile.TemporaryDirectory() as store_folder:
            store = Store(Path(store_folder))
            try:
                result = score_folder(images, spec, store, setup.device)
            finally:
                store.close()
        _sync(setup.device)
        ours = time.perf_counter() - began
        if result.failures:
            raise RuntimeError(f"{label}: {result.failures[:3]}")
        ours_peak = _peak_gb(setup.device)
        _reset_peak(setup.device)
        began = time.perf_counter()
        forward = model["bare"]()
        with torch.inference_mode():
            for start in range(0, len(files), setup.score_batch):
                forward([Image.open(f).convert("RGB") for f in files[start : start + setup.score_batch]])
        _sync(setup.device)
        bare = time.perf_counter() - began
        rows.append(Row(label, len(files) / ours, len(files) / bare, ours_peak, _peak_gb(setup.device),
                        f"{len(files)} images, batch {setup.score_batch}, model load included"))
        print(f"  {label}: {rows[-1].ours_per_s:.1f} vs {rows[-1].bare_per_s:.1f} images/s", flush=True)
        del forward
    return rows


# --- the check -----------------------------------------------------------------------------------------------

def _gb(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def print_table(rows: list[Row], setup: Setup, seconds: float) -> None:
    device = torch.cuda.get_device_name(setup.device) if setup.device.type == "cuda" else "CPU"
    print(f"\nckptbench GPU check on {device} ({'tiny models' if setup.tiny else 'real sizes, random weights'}), "
          f"torch {torch.__version__}, {seconds:.0f} s in all\n")
    print(f"| {'measurement':52} | ckptbench img/s | bare img/s | ratio | peak GB ckptbench / bare | notes |")
    print(f"|{'-' * 54}|----------------:|-----------:|------:|-------------------------:|-------|")
    for row in rows:
        print(f"| {row.what:52} | {row.ours_per_s:15.2f} | {row.bare_per_s:10.2f} | {row.ratio:5.2f} | "
              f"{_gb(row.ours_peak_gb):>11} / {_gb(row.bare_peak_gb):<11} | {row.note} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU (a smoke test of this script)")
    parser.add_argument("--compile", action="store_true",
                        help="with --tiny, really compile (inductor on a CPU takes minutes); by default the "
                             "compiled rows run with torch.compile disabled")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows (they compile the "
                        "UNets: most of this check's time; inductor's cache makes a second run faster)")
    parser.add_argument("--only", choices=("sd15", "sdxl", "scoring"), action="append",
                        help="run only these parts (repeatable); default: all")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        print("no CUDA device here: run this on a GPU machine, or with --tiny for the CPU smoke test")
        return 2
    if args.tiny and not args.compile:
        torch._dynamo.config.disable = True  # same code path, no minutes of CPU compilation
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ckptbench-gpu-check-") as scratch:
        setup = Setup(device=torch.device("cuda" if cuda and not args.tiny else "cpu"), tiny=args.tiny,
                      work=Path(scratch), steps=4 if args.tiny else 20,
                      images={"sd15": 8, "sdxl": 8} if args.tiny else {"sd15": 48, "sdxl": 24},
                      score_images=16 if args.tiny else 512, score_batch=8 if args.tiny else 64)
        os.environ.setdefault("CKPTBENCH_CACHE_DIR", str(setup.work / "cache"))
        rows: list[Row] = []
        sizes = {"sd15": 64, "sdxl": 64} if args.tiny else {"sd15": 512, "sdxl": 1024}
        parts = args.only or ["sd15", "sdxl", "scoring"]
        for family, size in sizes.items():
            if family in parts:
                print(f"{family}: generation … ({time.perf_counter() - started:.0f} s)", flush=True)
                rows += generation_rows(family, size, setup, (False,) if args.no_compile else (False, True))
        if "scoring" in parts:
            print(f"scoring … ({time.perf_counter() - started:.0f} s)", flush=True)
            rows += scoring_rows(setup)
    seconds = time.perf_counter() - started
    print_table(rows, setup, seconds)
    if not args.tiny and seconds > TIME_LIMIT_S:
        print(f"\nnote: took {seconds:.0f} s, more than the {TIME_LIMIT_S} s this check is meant to fit in")
    if args.json:
        args.json.write_text(json.dumps([{**row.__dict__, "ratio": row.ratio} for row in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
