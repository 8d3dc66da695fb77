"""Scoring cost: ckptbench's shared-backbone engine against separate passes and the naive per-image loop.

Scores N images with laion-aesthetic-v2 + clip-score + style-clip on a real-size CLIP ViT-L/14 with
random weights (the cost of a forward pass does not depend on the weights' values), and prints, all
measured in this run:

  (a)  ckptbench: one engine run, one backbone load, one forward pass per image for all three heads;
  (b)  one separate pass per scorer, as independent tools do (each loads CLIP and embeds every image);
  (c)  the naive loop of the GhostReview notebook: for every image and every scorer, load CLIP and the
       head from disk and embed the image (and, for style-clip, its references) again;
  bare the backbone's own work over the same images: decode, preprocess and forward, model already loaded;

plus (a) with dtype = "bf16" (CPU autocast) and the largest score deviation it causes, and the peak
memory (max RSS) of (a) at N and 4N images. Each measurement runs in its own process so peak memory is
its own; times exclude interpreter start-up and the one-off sha256 of the weights file (ckptbench keeps
file digests in its store). On a shared 2-core CPU the absolute times vary; the ratios are what matter.

    python benchmarks/scoring.py                       # N = 32, naive loop on 4 of them
    python benchmarks/scoring.py --images 64 --naive-images 64
    python benchmarks/scoring.py --tiny                # smoke test with a tiny CLIP (seconds)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCORERS = ("laion-aesthetic-v2", "clip-score", "style-clip")
REFERENCES = 2
VIT_L_14 = {
    "text_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                    "num_hidden_layers": 12, "projection_dim": 768, "max_position_embeddings": 77,
                    "vocab_size": 49408, "hidden_act": "quick_gelu"},
    "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                      "num_hidden_layers": 24, "image_size": 224, "patch_size": 14, "projection_dim": 768,
                      "hidden_act": "quick_gelu"},
    "projection_dim": 768,
}


# --- set-up ------------------------------------------------------------------------------------------

def build_model(folder: Path, tiny: bool) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from ckptbench.demo.tiny import save_tiny_clip
    from ckptbench.models.tokenizer import clip_tokenizer

    if tiny:
        return save_tiny_clip(folder, seed=0)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(**VIT_L_14)).eval().save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                       image_mean=[0.48145466, 0.4578275, 0.40821073],
                       image_std=[0.26862954, 0.26130258, 0.27577711]).save_pretrained(folder)
    clip_tokenizer().save_pretrained(folder)
    return folder


def head_file(work: Path) -> Path:
    real = REPO.parent / "shared" / "data" / "weights" / "sac+logos+ava1-l14-linearMSE.pth"
    if real.is_file():
        return real
    from ckptbench.demo.tiny import save_tiny_aesthetic_head

    return save_tiny_aesthetic_head(work / "head.pth", seed=0)


def make_images(folder: Path, count: int, seed: int, size: int = 512) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = rng.integers(0, 256, size=(size // 8, size // 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((size, size), Image.BICUBIC).save(folder / f"{index:04d}.png")
        (folder / f"{index:04d}.txt").write_text(f"a photograph of object number {index % 8}, detailed")
    return folder


def write_spec(path: Path, names: tuple[str, ...], model: Path, head: Path, references: Path, dtype: str) -> Path:
    lines = ["[scorers]", f"use = {json.dumps(list(names))}"]
    for name in names:
        lines += [f"[scorers.{name}]", f'model = "{model}"', f'dtype = "{dtype}"', "batch_size = 16"]
        if name == "laion-aesthetic-v2":
            lines.append(f'head = "{head}"')
        if name == "style-clip":
            lines.append(f'references = "{references}"')
    path.write_text("\n".join(lines) + "\n")
    return path


# --- measurements, each in its own process ------------------------------------------------------------

def child_ckptbench(folder: Path, spec: Path, store: Path, out: Path) -> dict[str, float]:
    import torch

    from ckptbench.hashing import sha256_file
    from ckptbench.score_folder import score_folder
    from ckptbench.spec_load import load_scorers_spec
    from ckptbench.store import Store

    scorers = load_scorers_spec(spec)
    opened = Store(store)
    for options in scorers.options.values():  # the one-off digest of the weights, kept by the store
        for weights in Path(options.model or "").glob("*.safetensors"):
            sha256_file(weights, opened)
    started, cpu = time.perf_counter(), time.process_time()
    result = score_folder(folder, scorers, opened, torch.device("cpu"))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    result.frame.to_csv(out, index=False)
    assert not result.failures, result.failures
    return {"seconds": seconds, "cpu": cpu}


def child_bare(folder: Path, model: Path) -> dict[str, float]:
    import torch
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPModel

    clip = CLIPModel.from_pretrained(model).eval()
    processor = CLIPImageProcessor.from_pretrained(model)
    files = sorted(folder.glob("*.png"))
    forward = forward_cpu = 0.0
    started, cpu = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for start in range(0, len(files), 16):
            images = [Image.open(f).convert("RGB") for f in files[start : start + 16]]
            pixels = processor(images=images, return_tensors="pt")["pixel_values"]
            began, began_cpu = time.perf_counter(), time.process_time()
            clip.get_image_features(pixel_values=pixels)
            forward += time.perf_counter() - began
            forward_cpu += time.process_time() - began_cpu
    return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu,
            "forward_seconds": forward, "forward_cpu": forward_cpu}


def child_naive(folder: Path, model: Path, head: Path, references: Path, count: int) -> dict[str, float]:
    """GhostReview-notebook style: every image, every scorer: load CLIP (and head) from disk, embed again."""
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    from ckptbench.metrics.aesthetic import load_aesthetic_head

    files = sorted(folder.glob("*.png"))[:count]
    reference_files = sorted(references.glob("*.png"))
    started, cpu = time.perf_counter(), time.process_time()
    for file in files:
        prompt = file.with_suffix(".txt").read_text()
        for scorer in SCORERS:
            clip = CLIPModel.from_pretrained(model).eval()
            processor = CLIPProcessor.from_pretrained(model)
            with torch.no_grad():
                image = clip.get_image_features(**processor(images=Image.open(file).convert("RGB"),
                                                            return_tensors="pt")).pooler_output
                image = image / image.norm(dim=-1, keepdim=True)
                if scorer == "laion-aesthetic-v2":
                    load_aesthetic_head(str(head))(image)
                elif scorer == "clip-score":
                    text = clip.get_text_features(**processor(text=[prompt], return_tensors="pt",
                                                              padding=True)).pooler_output
                    (100 * (image @ (text / text.norm(dim=-1, keepdim=True)).T).clamp(min=0))
                else:
                    refs = clip.get_image_features(**processor(images=[Image.open(r).convert("RGB")
                                                                       for r in reference_files],
                                                               return_tensors="pt")).pooler_output
                    image @ (refs / refs.norm(dim=-1, keepdim=True)).mean(0)
    return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}


def run_child(*args: str) -> dict[str, float]:
    output = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1",
                                 "TOKENIZERS_PARALLELISM": "false", "PATH": "/usr/bin:/bin"}).stdout
    return json.loads(output.strip().splitlines()[-1])


def child_main(argv: list[str]) -> None:
    mode, *rest = argv
    if mode == "ckptbench":
        result = child_ckptbench(*(Path(a) for a in rest))
    elif mode == "bare":
        result = child_bare(Path(rest[0]), Path(rest[1]))
    else:
        result = child_naive(Path(rest[0]), Path(rest[1]), Path(rest[2]), Path(rest[3]), int(rest[4]))
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


# --- the benchmark -------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32, help="N, the number of images (≥ 32 for the record)")
    parser.add_argument("--naive-images", type=int, default=4, help="images the naive loop runs on (it is "
                        "per-image by construction; its time is scaled to N)")
    parser.add_argument("--tiny", action="store_true", help="a tiny CLIP instead of ViT-L/14 (smoke test)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    n = args.images
    with tempfile.TemporaryDirectory(prefix="ckptbench-bench-") as scratch:
        work = Path(scratch)
        model = build_model(work / "clip", args.tiny)
        head = head_file(work)
        references = make_images(work / "references", REFERENCES, seed=1)
        images = {count: make_images(work / f"images-{count}", count, seed=0) for count in (n, 4 * n)}
        spec = {dtype: write_spec(work / f"spec-{dtype}.toml", SCORERS, model, head, references, dtype)
                for dtype in ("fp32", "bf16")}

        def ckptbench(label: str, count: int, spec_path: Path) -> dict[str, float]:
            return run_child("ckptbench", str(images[count]), str(spec_path), str(work / f"store-{label}"),
                             str(work / f"{label}.csv"))

        a = ckptbench("a", n, spec["fp32"])
        bare = run_child("bare", str(images[n]), str(model))
        separate = [ckptbench(f"b-{name}", n, write_spec(work / f"spec-{name}.toml", (name,), model, head,
                                                          references, "fp32")) for name in SCORERS]
        b_seconds = sum(part["seconds"] for part in separate)
        naive_count = min(args.naive_images, n)
        naive = run_child("naive", str(images[n]), str(model), str(head), str(references), str(naive_count))
        c_seconds = naive["seconds"] * n / naive_count
        bf16 = ckptbench("a-bf16", n, spec["bf16"])
        a4 = ckptbench("a-4n", 4 * n, spec["fp32"])
        deviation = _max_deviation(work / "a.csv", work / "a-bf16.csv")

    scale = n / naive_count
    print(f"\nScoring {n} images (512×512 PNG) with {', '.join(SCORERS)} on "
          f"{'a tiny CLIP' if args.tiny else 'CLIP ViT-L/14 (real size, random weights)'}, CPU, fp32\n")
    rows = [
        ("(a) ckptbench", a["seconds"], a["cpu"]),
        ("(b) one pass per scorer", b_seconds, sum(part["cpu"] for part in separate)),
        (f"(c) naive per-image loop ({naive_count} images, ×{scale:g})", c_seconds, naive["cpu"] * scale),
        ("bare backbone: decode + preprocess + forward", bare["seconds"], bare["cpu"]),
        ("bare backbone: forward only", bare["forward_seconds"], bare["forward_cpu"]),
        ("(a) with dtype = bf16 (CPU autocast)", bf16["seconds"], bf16["cpu"]),
        (f"(a) at 4N = {4 * n} images", a4["seconds"], a4["cpu"]),
    ]
    print(f"{'measurement':58} {'wall s':>8} {'CPU s':>8} {'CPU ÷ (a)':>10}")
    for label, seconds, cpu in rows:
        print(f"{label:58} {seconds:8.1f} {cpu:8.1f} {cpu / a['cpu']:10.2f}")
    # CPU time (user + system, all threads) is the cost measure: on a shared machine wall time also
    # counts other people's work.
    print(f"\nCPU time: (b) / (a) = {rows[1][2] / a['cpu']:.2f}   (c) / (a) = {rows[2][2] / a['cpu']:.2f}   "
          f"(a) / bare decode+forward = {a['cpu'] / bare['cpu']:.3f}   (a) / bare forward = "
          f"{a['cpu'] / bare['forward_cpu']:.3f}   (a, bf16) / (a) = {bf16['cpu'] / a['cpu']:.2f}")
    print(f"wall time: (b) / (a) = {b_seconds / a['seconds']:.2f}   (c) / (a) = {c_seconds / a['seconds']:.2f}   "
          f"(a) / bare decode+forward = {a['seconds'] / bare['seconds']:.3f}")
    print("largest |bf16 − fp32| score deviation: " + ", ".join(f"{k} {v:.4g}" for k, v in deviation.items()))
    print(f"peak RSS of (a): {a['max_rss_mb']:.0f} MB at N = {n}, {a4['max_rss_mb']:.0f} MB at 4N = {4 * n}")


def _max_deviation(fp32: Path, bf16: Path) -> dict[str, float]:
    import pandas as pd

    merged = pd.read_csv(fp32).merge(pd.read_csv(bf16), on=["image", "scorer"], suffixes=("_fp32", "_bf16"))
    merged["deviation"] = (merged["value_fp32"] - merged["value_bf16"]).abs()
    return merged.groupby("scorer")["deviation"].max().to_dict()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
    else:
        main()
