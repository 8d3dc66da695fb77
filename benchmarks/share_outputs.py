"""Cost of the shareable outputs on real pictures, against the report's thumbnails measured in the same run.

    PYTHONPATH=src python benchmarks/share_outputs.py --images ../shared/data/ghostreview/Image/TargetForReviews \\
        --checkpoints 8 --prompts 4 --seeds 8

Builds a store whose "generated" images are the given real pictures (cycled), then measures:

* the report's thumbnails (the baseline) and its grid images (one labelled WebP per prompt, drawn from the
  thumbnails): seconds and bytes, first render and again (the grid images are reused);
* ``ckptbench grid`` (full-size pictures scaled to 256 px, PNG) and ``ckptbench export images``: seconds
  per image.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image

from ckptbench.hashing import content_key
from ckptbench.infotext import format_infotext
from ckptbench.report.outputs import write_outputs
from ckptbench.share.cells import load_cells, select
from ckptbench.share.export import export_images
from ckptbench.share.grid import default_axes, plan_grids, write_grids
from ckptbench.share.grid_image import GridStyle
from ckptbench.store import RunItem, Store


def build_store(root: Path, pictures: list[Path], checkpoints: int, prompts: int, seeds: int) -> Store:
    store = Store(root)
    run_id = store.start_run({"benchmark": {"name": "share benchmark", "bootstrap": 100},
                              "scorers": {"use": ["aesthetic"]}}, {})
    source = itertools.cycle(pictures)
    items = []
    for c in range(checkpoints):
        name = f"checkpoint-{c}"
        store.put_run_checkpoint(run_id, name, name, None, "ok", None)
        for p in range(prompts):
            prompt = f"prompt {p}, masterpiece, best quality, detailed background"
            for seed in range(1, seeds + 1):
                key = content_key({"c": c, "p": p, "s": seed})
                with Image.open(next(source)) as picture:
                    image = picture.convert("RGB")
                store.put_image(key, image, format_infotext(prompt, "", {"Seed": seed, "Model": name}),
                                checkpoint_sha256="0", prompt=prompt, negative_prompt="", seed=seed, settings={},
                                backend="benchmark", seconds=None)
                items.append(RunItem(name, "quality", f"{p:03d}", prompt, seed, key))
    store.put_run_items(run_id, items)
    scorer_key = content_key({"scorer": "aesthetic"})
    store.put_scorer(scorer_key, "aesthetic", {"id": "aesthetic", "version": "1", "higher_is_better": True})
    store.put_run_scores(run_id, [(i, "aesthetic", scorer_key, "") for i in range(len(items))])
    store.put_scores(scorer_key, [(item.image_key, "", 5.0 + (i % 7) / 10) for i, item in enumerate(items)])
    store.finish_run(run_id, "ok")
    return store


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True, help="folder of real pictures (searched recursively)")
    parser.add_argument("--checkpoints", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    pictures = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    work = Path(tempfile.mkdtemp(prefix="ckptbench-share-"))
    try:
        store = build_store(work / "store", pictures, args.checkpoints, args.prompts, args.seeds)
        count = args.checkpoints * args.prompts * args.seeds
        import ckptbench.report.html as html

        timings: dict[str, float] = {}
        original = html.with_grid_images

        def timed(grids, report_dir):  # type: ignore[no-untyped-def]
            start = time.perf_counter()
            result = original(grids, report_dir)
            timings["grid images"] = timings.get("grid images", 0.0) + time.perf_counter() - start
            return result

        html.with_grid_images = timed  # type: ignore[assignment]
        start = time.perf_counter()
        write_outputs(store)
        first = time.perf_counter() - start
        grids_first = timings.pop("grid images")
        start = time.perf_counter()
        write_outputs(store)
        again = time.perf_counter() - start
        grids_again = timings.pop("grid images")
        html.with_grid_images = original  # type: ignore[assignment]
        report = store.root / "report"
        thumbs, grids = folder_bytes(report / "thumbs"), folder_bytes(report / "grids")
        print(f"{count} pictures ({len(pictures)} distinct real images), {args.prompts} grids of "
              f"{args.checkpoints} × {args.seeds}")
        print(f"report outputs: first {first:.2f} s (grid images {grids_first:.2f} s), again {again:.2f} s "
              f"(grid images {grids_again:.3f} s: reused)")
        print(f"thumbnails {thumbs / 1e3:.0f} kB ({thumbs / count / 1e3:.1f} kB per picture); grid images "
              f"{grids / 1e3:.0f} kB ({grids / count / 1e3:.1f} kB per picture): ratio {grids / thumbs:.2f}")
        run = load_cells(store)
        planned = plan_grids(run, select(run, {}), *default_axes(run), run.scorers)
        start = time.perf_counter()
        written = write_grids(planned, work / "grids", "png", GridStyle())
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in written)
        print(f"ckptbench grid (256 px, PNG): {seconds:.2f} s, {seconds / count * 1e3:.1f} ms per picture, "
              f"{size / 1e6:.1f} MB in {len(written)} files")
        start = time.perf_counter()
        export_images(run, run.cells, store, work / "export", "checkpoint")
        seconds = time.perf_counter() - start
        print(f"ckptbench export images (PNG copies): {seconds:.2f} s, {seconds / count * 1e3:.1f} ms per picture")
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
