"""Load time and peak memory of each family's tiny model (and a mid-size Flux), against tiny SD1.5 in the same run.

    python benchmarks/family_loading.py [--repeat 5] [--mid]

For every family (SD1.5 as the baseline, SD2-v, SDXL v-pred + ZTSNR, Flux [dev] full checkpoint, Flux [dev]
transformer-only with separate text encoders and VAE, Flux fp8, SD3.5 transformer-only) it saves the tiny
model in its distributed layout, then, in a fresh process each time, resolves and loads it through
``load_pipeline`` (CPU, fp32) and reports the median load seconds, their ratio to SD1.5's, the process's peak
resident memory growth during the load and the weights' size in memory. ``--mid`` adds a Flux of about 160 M
parameters, large enough that a second copy of its weights would show in the peak (it does not: the tensors
move from the file into the modules).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# The peak is the process's VmHWM (per address space, so a fresh one per exec; getrusage's ru_maxrss keeps the
# parent's high-water mark across fork and exec on Linux).
_CHILD = """
import json, sys, time
import torch
from ckptbench.generate.loading import load_pipeline
from ckptbench.models.checkpoint import resolve_checkpoint
from ckptbench.spec import CheckpointSpec
fields = json.loads(sys.argv[1])
def high_water():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))
torch.set_num_threads(1)
from diffusers import FluxPipeline, StableDiffusion3Pipeline, StableDiffusionPipeline  # lazy imports, not loading
before = high_water()
started = time.perf_counter()
pipeline = load_pipeline(resolve_checkpoint(CheckpointSpec(**fields)), torch.device("cpu"), torch.float32)
seconds = time.perf_counter() - started
peak = high_water()
weights = sum(t.numel() * t.element_size() for m in pipeline.components.values() if isinstance(m, torch.nn.Module)
              for t in [*m.parameters(), *m.buffers()])
print(json.dumps({"seconds": seconds, "peak_growth": peak - before, "weights": weights}))
"""


def _build(root: Path, mid: bool) -> dict[str, dict[str, object]]:
    import torch

    from ckptbench.demo.tiny import save_config_folder, save_single_file, tiny_sd2_pipeline, tiny_sd15_pipeline
    from ckptbench.demo.tiny_families import (
        TINY_FLUX,
        save_flow_checkpoint,
        save_flow_split,
        save_sdxl_vpred_ztsnr,
        save_tiny_t5_tokenizer,
        tiny_flux_pipeline,
        tiny_sd35_pipeline,
    )

    tokenizer = save_tiny_t5_tokenizer(root / "t5")
    sd15, sd2 = tiny_sd15_pipeline(1), tiny_sd2_pipeline(5)
    flux, sd35 = tiny_flux_pipeline(tokenizer, 1), tiny_sd35_pipeline(tokenizer, 2)
    from ckptbench.demo.tiny import tiny_sdxl_pipeline

    flux_config, sd35_config = save_config_folder(flux, root / "flux-config"), save_config_folder(sd35, root / "sd3c")
    split, fp8, sd35_split = (save_flow_split(flux, root / "flux-split"),
                              save_flow_split(flux, root / "flux-fp8", torch.float8_e4m3fn),
                              save_flow_split(sd35, root / "sd35-split", with_vae=True))
    flow = {"config": str(flux_config), "t5_tokenizer": str(tokenizer)}
    models: dict[str, dict[str, object]] = {
        "sd15": {"path": str(save_single_file(sd15, root / "sd15.safetensors")),
                 "config": str(save_config_folder(sd15, root / "sd15c"))},
        "sd2-v": {"path": str(save_single_file(sd2, root / "sd2.safetensors", extras={"v_pred": torch.tensor([])})),
                  "config": str(save_config_folder(sd2, root / "sd2c"))},
        "sdxl-vpred-ztsnr": {"path": str(save_sdxl_vpred_ztsnr(root / "xl.safetensors")),
                             "config": str(save_config_folder(tiny_sdxl_pipeline(6), root / "xlc"))},
        "flux-full": {"path": str(save_flow_checkpoint(flux, root / "flux.safetensors")), **flow},
        "flux-split": {"path": str(split["transformer"]), "vae": str(split["vae"]),
                       "text_encoders": [str(split["clip_l"]), str(split["t5xxl"])], **flow},
        "flux-fp8": {"path": str(fp8["transformer"]), "vae": str(fp8["vae"]),
                     "text_encoders": [str(fp8["clip_l"]), str(fp8["t5xxl"])], **flow},
        "sd35-split": {"path": str(sd35_split["transformer"]), "config": str(sd35_config),
                       "text_encoders": [str(sd35_split[r]) for r in ("clip_l", "clip_g", "t5xxl")],
                       "t5_tokenizer": str(tokenizer)},
    }
    if mid:
        import ckptbench.demo.tiny_families as families

        saved = dict(TINY_FLUX)
        families.TINY_FLUX.update(num_layers=4, num_single_layers=8, attention_head_dim=64, num_attention_heads=8,
                                  axes_dims_rope=[16, 24, 24])
        big = tiny_flux_pipeline(tokenizer, 1)
        families.TINY_FLUX.clear()
        families.TINY_FLUX.update(saved)
        models["flux-mid"] = {"path": str(save_flow_checkpoint(big, root / "flux-mid.safetensors")),
                              "config": str(save_config_folder(big, root / "flux-mid-config")),
                              "t5_tokenizer": str(tokenizer)}
    return models


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mid", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        models = _build(Path(folder), args.mid)
        rows = {}
        for name, fields in models.items():
            runs = [json.loads(subprocess.run([sys.executable, "-c", _CHILD, json.dumps({"name": name, **fields})],
                                              check=True, capture_output=True, text=True).stdout.splitlines()[-1])
                    for _ in range(args.repeat)]
            rows[name] = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        base = rows["sd15"]["seconds"]
        print(f"{'model':18} {'load s':>7} {'× sd15':>7} {'peak growth MiB':>16} {'weights MiB':>12} "
              f"{'peak/weights':>13}")
        for name, row in rows.items():
            print(f"{name:18} {row['seconds']:7.3f} {row['seconds'] / base:7.2f} {row['peak_growth'] / 2**20:16.1f} "
                  f"{row['weights'] / 2**20:12.1f} {row['peak_growth'] / row['weights']:13.2f}")


if __name__ == "__main__":
    main()
