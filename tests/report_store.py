"""A small finished run written straight through the Store's API (no generation), for report tests.

Three checkpoints × two prompts × three seeds with real PNGs carrying A1111 infotext, two scorers with
known values, one image that failed (its cell has no picture and no score) and one checkpoint that failed
to load (no cells at all). Builds in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ckptbench.hashing import content_key
from ckptbench.infotext import format_infotext
from ckptbench.store import RunItem, Store

CHECKPOINTS = ("alpha", "beta", "gamma")
FAILED_CHECKPOINT = "broken"
PROMPTS = ("a lighthouse at dusk, oil painting", "portrait of an old fisherman </script><b>bold?</b>")
SEEDS = (1, 2, 3)
SCORERS = {"aesthetic": True, "artifacts": False}  # name → higher is better
FAILED_CELL = ("gamma", 1, 3)  # checkpoint, prompt index, seed


def score_of(checkpoint: str, prompt: int, seed: int, scorer: str) -> float:
    """Known values: alpha > beta > gamma on "aesthetic", by clear margins; "artifacts" the other way."""
    base = {"alpha": 6.0, "beta": 5.0, "gamma": 4.0}[checkpoint]
    value = base + 0.3 * prompt + 0.05 * seed
    return value if scorer == "aesthetic" else 10.0 - value


LORA_SCORER = "style-loss"  # lower is better
SET_SCORER = "kid"  # set-level, lower is better
SHOWCASE = {1: "beta"}  # LoRA case → the checkpoint its showcase image was made with (NoTM)


def lora_loss(checkpoint: str, case: int, seed: int) -> float:
    """Per case a different scale (as real LoRA showcase images differ); beta best on case 1."""
    base = {"alpha": 1.0, "beta": 2.0, "gamma": 3.0}[checkpoint]
    if case == 1 and checkpoint == "beta":
        base = 0.5
    return (case + 1) * 10.0 * base + 0.1 * seed


def build_report_store(root: Path, *, size: tuple[int, int] = (96, 64), prompts: int = 2,
                       analysis: dict[str, object] | None = None, lora_cases: int = 0,
                       set_scores: bool = False) -> Store:
    """``prompts`` quality prompts (the first two are PROMPTS); ``analysis``: the spec's [analysis]
    section (baseline, thresholds, composite); ``lora_cases``: a LoRA suite "loras" with that many cases,
    scored only by LORA_SCORER, without images; ``set_scores``: a set-level SET_SCORER value per checkpoint."""
    store = Store(root)
    spec = {"benchmark": {"name": "report test", "bootstrap": 200}, "scorers": {"use": [*SCORERS, LORA_SCORER]},
            "analysis": analysis or {}}
    texts = [*PROMPTS, *(f"test prompt number {i}" for i in range(len(PROMPTS), prompts))][:prompts]
    run_id = store.start_run(spec, {"device": "cpu", "device_name": "test", "generation_dtype": "fp32",
                                    "packages": {"numpy": "x"}})
    store.put_run_checkpoint(run_id, FAILED_CHECKPOINT, "models/broken.safetensors", None, "failed",
                             "checkpoint 'broken': models/broken.safetensors is truncated; download it again.")
    store.put_failure(run_id, "checkpoint", "checkpoint 'broken': models/broken.safetensors is truncated; "
                      "download it again.", checkpoint=FAILED_CHECKPOINT)
    rng = np.random.default_rng(0)
    items: list[RunItem] = []
    for checkpoint in CHECKPOINTS:
        sha = content_key({"checkpoint": checkpoint})
        store.put_run_checkpoint(run_id, checkpoint, f"models/{checkpoint}.safetensors", sha, "ok", None)
        for prompt_index, prompt in enumerate(texts):
            for seed in SEEDS:
                key = content_key({"checkpoint": checkpoint, "prompt": prompt, "seed": seed})
                items.append(RunItem(checkpoint, "quality", f"{prompt_index:03d}", prompt, seed, key))
                if (checkpoint, prompt_index, seed) == FAILED_CELL:
                    store.put_failure(run_id, "image", "CUDA out of memory", checkpoint=checkpoint, image_key=key)
                    continue
                pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
                infotext = format_infotext(prompt, "lowres", {"Steps": 4, "Sampler": "Euler a", "CFG scale": 7,
                                                              "Seed": seed, "Size": f"{size[0]}x{size[1]}",
                                                              "Model": checkpoint})
                store.put_image(key, Image.fromarray(pixels), infotext, checkpoint_sha256=sha, prompt=prompt,
                                negative_prompt="lowres", seed=seed, settings={}, backend="test", seconds=0.1)
    quality_items = len(items)
    cases = [("quality", f"{i:03d}", {"kind": "quality", "prompt": text}) for i, text in enumerate(texts)]
    for case in range(lora_cases):
        cases.append(("loras", f"{case:03d}", {"kind": "lora", "prompt": f"<lora:style{case}:0.8> a cat",
                                               "label": f"style{case}",
                                               "showcase_models": [SHOWCASE[case]] if case in SHOWCASE else []}))
        for checkpoint in CHECKPOINTS:
            for seed in SEEDS:
                key = content_key({"lora": case, "checkpoint": checkpoint, "seed": seed})
                items.append(RunItem(checkpoint, "loras", f"{case:03d}", f"<lora:style{case}:0.8> a cat", seed, key))
    store.put_run_items(run_id, items)
    store.put_run_cases(run_id, cases)
    present = set(store.existing_images(item.image_key for item in items))
    for scorer, higher in {**SCORERS, LORA_SCORER: False}.items():
        scorer_key = content_key({"scorer": scorer})
        store.put_scorer(scorer_key, scorer, {"id": scorer, "version": "1", "higher_is_better": higher,
                                              "weights_sha256": "0" * 64, "dtype": "fp32",
                                              "description": f"test scorer {scorer}"})
        if scorer == LORA_SCORER:
            mine = list(range(quality_items, len(items)))
            values = [(items[i].image_key, "", lora_loss(items[i].checkpoint, int(items[i].case_id), items[i].seed))
                      for i in mine]
        else:
            mine = list(range(quality_items))
            values = [(items[i].image_key, "", score_of(items[i].checkpoint, int(items[i].case_id), items[i].seed,
                                                        scorer)) for i in mine if items[i].image_key in present]
        store.put_run_scores(run_id, [(index, scorer, scorer_key, "") for index in mine])
        store.put_scores(scorer_key, values)
    if set_scores:
        scorer_key = content_key({"scorer": SET_SCORER})
        store.put_scorer(scorer_key, SET_SCORER, {"id": SET_SCORER, "version": "1", "level": "set",
                                                  "higher_is_better": False, "description": "test set scorer"})
        rows = []
        for checkpoint in CHECKPOINTS:
            set_key = content_key({"set": checkpoint})
            store.put_set_score(scorer_key, set_key, set_value(checkpoint), 6, 10)
            rows.append((checkpoint, "quality", SET_SCORER, scorer_key, set_key))
        store.put_run_sets(run_id, rows)
    store.finish_run(run_id, "ok", {"device": "cpu", "device_name": "test", "generation_dtype": "fp32",
                                    "duration_s": 1.5})
    return store


def set_value(checkpoint: str) -> float:
    return {"alpha": 0.01, "beta": 0.02, "gamma": 0.03}[checkpoint]


def build_scores_store(root: Path, values: dict[str, dict[str, np.ndarray]], *, higher_is_better: bool = True,
                       analysis: dict[str, object] | None = None) -> Store:
    """A finished run of scores only (no images, as an import writes): ``values`` is scorer → checkpoint →
    (cases, seeds) array, one quality suite; every scorer in the spec's scorers.use, in the given order."""
    store = Store(root)
    spec = {"benchmark": {"name": "scores only", "bootstrap": 200}, "scorers": {"use": list(values)},
            "analysis": analysis or {}}
    run_id = store.start_run(spec, {"device": "cpu", "imported": True})
    first = next(iter(values.values()))
    cases, seeds = next(iter(first.values())).shape
    items = []
    for checkpoint in first:
        store.put_run_checkpoint(run_id, checkpoint, f"models/{checkpoint}.safetensors", None, "ok", None)
        for case in range(cases):
            for seed in range(1, seeds + 1):
                key = content_key({"checkpoint": checkpoint, "case": case, "seed": seed})
                items.append(RunItem(checkpoint, "quality", f"{case:03d}", f"prompt {case}", seed, key))
    store.put_run_items(run_id, items)
    store.put_run_cases(run_id, [("quality", f"{c:03d}", {"kind": "quality", "prompt": f"prompt {c}"})
                                 for c in range(cases)])
    for scorer, table in values.items():
        scorer_key = content_key({"scorer": scorer})
        store.put_scorer(scorer_key, scorer, {"id": scorer, "version": "1", "higher_is_better": higher_is_better,
                                              "weights_sha256": "0" * 64, "description": f"test scorer {scorer}"})
        store.put_run_scores(run_id, [(index, scorer, scorer_key, "") for index in range(len(items))])
        store.put_scores(scorer_key, [(item.image_key, "", float(table[item.checkpoint][int(item.case_id),
                                                                                       item.seed - 1]))
                                      for item in items])
    store.finish_run(run_id, "ok", {"device": "cpu", "imported": True})
    return store
