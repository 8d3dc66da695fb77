"""``ckptbench demo``: a complete benchmark of two tiny random-weight checkpoints, in about a minute.

The checkpoints are built with the real diffusers/transformers classes and saved in the real formats
(one as an original-layout single .safetensors file, one as a diffusers folder); the scorers run a
tiny random CLIP and a random aesthetic head in the LAION file format. The numbers mean nothing about
image quality: they show that every stage of the machinery works.
"""

from __future__ import annotations

from pathlib import Path

from ckptbench.atomic import atomic_write_text

DEMO_PROMPTS = (
    "a lighthouse on a rocky coast at dusk, oil painting",
    "portrait of an old fisherman, photograph, 85mm, soft light",
    "(cute corgi:1.2) wearing a tiny crown, anime style",
    "isometric cozy reading room, low poly, pastel colours",
)

SPEC_TEMPLATE = '''\
# Written by `ckptbench demo`. Both checkpoints and both scorer models are tiny and RANDOM:
# the numbers only show that the machinery works, not which model is better.
[benchmark]
name = "ckptbench demo (tiny random models)"
store = "."

[[checkpoints]]
name = "tiny-a"
path = "models/tiny-a.safetensors"   # original (A1111/Civitai) single-file layout
config = "models/tiny-sd15-config"   # its architecture is not real SD1.5 size, so name its config

[[checkpoints]]
name = "tiny-b"
path = "models/tiny-b"               # a diffusers folder

[generation]
sampler = "Euler a"
steps = 8
cfg = 7.0
width = 64
height = 64
seeds = {{from = 1, to = 4}}
batch_size = 4

[[suites]]
name = "quality"
prompts = [
{prompts}
]

[scorers]
use = ["laion-aesthetic-v2", "clip-score"]

[scorers.laion-aesthetic-v2]
model = "models/tiny-clip"
head = "models/tiny-aesthetic-head.pth"

[scorers.clip-score]
model = "models/tiny-clip"
'''


def build_demo_models(models: Path) -> None:
    """Build the tiny models once; later demos reuse them (same bytes, so every image stays cached)."""
    marker = models / ".complete"
    if marker.exists():
        return
    from ckptbench.demo.tiny import (
        save_config_folder,
        save_diffusers_folder,
        save_single_file,
        save_tiny_aesthetic_head,
        save_tiny_clip,
        tiny_sd15_pipeline,
    )

    models.mkdir(parents=True, exist_ok=True)
    first = tiny_sd15_pipeline(seed=1)
    save_single_file(first, models / "tiny-a.safetensors")
    save_config_folder(first, models / "tiny-sd15-config")
    save_diffusers_folder(tiny_sd15_pipeline(seed=2), models / "tiny-b")
    save_tiny_clip(models / "tiny-clip", seed=3)
    save_tiny_aesthetic_head(models / "tiny-aesthetic-head.pth", seed=4)
    marker.write_text("ok\n")


def write_demo_spec(out: Path) -> Path:
    prompts = "\n".join(f'    "{prompt}",' for prompt in DEMO_PROMPTS)
    path = out / "spec.toml"
    atomic_write_text(path, SPEC_TEMPLATE.format(prompts=prompts))
    return path
