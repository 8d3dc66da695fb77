"""Size and load time of the HTML report (issue 6), measured in headless Chromium.

    PYTHONPATH=src python benchmarks/report_load.py [--ghostreview RELEASE] [--demo DEMO_DIR]
                                                    [--synthetic N] [--repeat 5]

* GhostReview: imports the release's real per-image scores (8 checkpoints, no images) into a temporary
  store and writes its report.
* --demo DIR: the report of an existing `ckptbench demo --out DIR` folder (rewritten in place).
* --synthetic N: a store of N images of 512×768 (smooth random colour fields with fine noise, written
  through the Store like generated images: 8 checkpoints × prompts × 16 seeds) to check the size target
  (a report over 10,000 images under 100 MB); the per-image cost extrapolates linearly.

For each report: the time to write all outputs (first time: thumbnails made; second time: reused), the
report folder's size (index.html, thumbnails, infotext scripts; the store's PNGs are linked, not
counted) and the page's DOMContentLoaded / load times over --repeat fresh navigations (median). The
yardstick, measured in the same browser in the same run, is a minimal page with one table.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/chromium.py: the DevTools driver the browser tests use

from tests.chromium import Chromium, find_chromium  # noqa: E402

from ckptbench.hashing import content_key  # noqa: E402
from ckptbench.imports.ghostreview import import_results  # noqa: E402
from ckptbench.infotext import format_infotext  # noqa: E402
from ckptbench.report.outputs import write_outputs  # noqa: E402
from ckptbench.store import RunItem, Store  # noqa: E402

DEFAULT_RELEASE = ROOT.parent / "shared" / "data" / "ghostreview"


def folder_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def timed_outputs(store_root: Path) -> tuple[float, float]:
    """Seconds to write every output twice: the first run makes thumbnails, the second reuses them."""
    times = []
    for _ in range(2):
        store = Store(store_root)
        try:
            start = time.perf_counter()
            write_outputs(store)
            times.append(time.perf_counter() - start)
        finally:
            store.close()
    return times[0], times[1]


def load_times(browser: Chromium, page: Path, repeat: int) -> tuple[float, float]:
    dom, load = [], []
    for _ in range(repeat):
        browser.open("about:blank")
        browser.open(page.resolve().as_uri())
        timing = browser.evaluate("(() => { const t = performance.getEntriesByType('navigation')[0];"
                                  " return [t.domContentLoadedEventEnd, t.loadEventEnd]; })()")
        dom.append(timing[0])
        load.append(timing[1])
    errors = browser.console_errors()
    if errors:
        raise SystemExit(f"{page}: console errors: {errors[:3]}")
    return statistics.median(dom), statistics.median(load)


def synthetic_store(root: Path, images: int) -> Path:
    """N images of 512×768 written through the Store, with two scores each."""
    store = Store(root)
    rng = np.random.default_rng(0)
    checkpoints, seeds = 8, 16
    prompts = max(1, images // (checkpoints * seeds))
    run_id = store.start_run({"benchmark": {"name": f"synthetic {images} images", "bootstrap": 200},
                              "scorers": {"use": ["aesthetic", "clip"]}}, {"device": "cpu"})
    items = []
    for c in range(checkpoints):
        name = f"checkpoint-{c}"
        store.put_run_checkpoint(run_id, name, f"models/{name}.safetensors", content_key(name), "ok", None)
        for p in range(prompts):
            for seed in range(1, seeds + 1):
                key = content_key({"c": c, "p": p, "s": seed})
                field = rng.integers(0, 256, size=(12, 8, 3), dtype=np.uint8)
                smooth = np.asarray(Image.fromarray(field).resize((512, 768), Image.Resampling.BICUBIC), dtype=np.int16)
                pixels = np.clip(smooth + rng.integers(-12, 13, size=smooth.shape), 0, 255).astype(np.uint8)
                prompt = f"synthetic prompt {p}, masterpiece, best quality, detailed background"
                infotext = format_infotext(prompt, "lowres, bad anatomy", {"Steps": 30, "Sampler": "DPM++ 2M Karras",
                                                                            "CFG scale": 6, "Seed": seed,
                                                                            "Size": "512x768", "Model": name})
                store.put_image(key, Image.fromarray(pixels), infotext, checkpoint_sha256=content_key(name),
                                prompt=prompt, negative_prompt="", seed=seed, settings={}, backend="synthetic",
                                seconds=None)
                items.append(RunItem(name, "quality", f"{p:03d}", prompt, seed, key))
    store.put_run_items(run_id, items)
    for scorer in ("aesthetic", "clip"):
        scorer_key = content_key(scorer)
        store.put_scorer(scorer_key, scorer, {"id": scorer, "version": "1", "higher_is_better": True})
        store.put_run_scores(run_id, [(i, scorer, scorer_key, "") for i in range(len(items))])
        store.put_scores(scorer_key, [(item.image_key, "", float(rng.normal(6, 1))) for item in items])
    store.finish_run(run_id, "ok", {"device": "cpu"})
    store.close()
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ghostreview", type=Path, default=DEFAULT_RELEASE)
    parser.add_argument("--demo", type=Path, default=None)
    parser.add_argument("--synthetic", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    executable = find_chromium()
    if executable is None:
        raise SystemExit("no Chromium found: apt-get update && apt-get install -y chromium")

    work = Path(tempfile.mkdtemp(prefix="ckptbench-report-"))
    stores: list[tuple[str, Path, int]] = []
    if args.ghostreview and args.ghostreview.is_dir():
        store = Store(work / "ghostreview")
        with store.exclusive():
            import_results(store, args.ghostreview)
        store.close()
        stores.append(("GhostReview import (8 checkpoints, 0 images)", work / "ghostreview", 0))
    if args.demo:
        stores.append(("demo (2 checkpoints, 32 images)", args.demo, 32))
    if args.synthetic:
        start = time.perf_counter()
        synthetic_store(work / "synthetic", args.synthetic)
        print(f"(built the synthetic store in {time.perf_counter() - start:.0f} s)")
        stores.append((f"synthetic ({args.synthetic} images of 512×768)", work / "synthetic", args.synthetic))

    yardstick = work / "yardstick.html"
    yardstick.write_text("<!DOCTYPE html><meta charset='utf-8'><title>x</title><table><tr><td>1</td></tr></table>")
    browser = Chromium(executable, work / "profile")
    try:
        base_dom, base_load = load_times(browser, yardstick, args.repeat)
        print(f"yardstick page: DOMContentLoaded {base_dom:.0f} ms, load {base_load:.0f} ms (median of {args.repeat})")
        for label, root, images in stores:
            first, second = timed_outputs(root)
            total, files = folder_size(root / "report")
            page = (root / "report" / "index.html").stat().st_size
            thumbs, thumb_files = folder_size(root / "report" / "thumbs") if (root / "report" / "thumbs").is_dir() \
                else (0, 0)
            dom, load = load_times(browser, root / "report" / "index.html", args.repeat)
            print(f"\n{label}")
            print(f"  outputs written in {first:.1f} s (first), {second:.1f} s (again, thumbnails reused)")
            print(f"  report folder {total / 1e6:.2f} MB in {files} files: index.html {page / 1e6:.2f} MB, "
                  f"thumbnails {thumbs / 1e6:.2f} MB in {thumb_files} files")
            print(f"  load: DOMContentLoaded {dom:.0f} ms ({dom / max(base_dom, 1):.1f}× yardstick), "
                  f"load {load:.0f} ms ({load / max(base_load, 1):.1f}× yardstick)")
            if images:
                per_image = total / images
                print(f"  {per_image / 1e3:.1f} kB per image → {per_image * 10_000 / 1e6:.0f} MB for 10,000 images")
    finally:
        browser.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
