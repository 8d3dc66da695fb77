"""``ckptbench grid`` and ``ckptbench export images``: a run's pictures in forms to share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ckptbench.commands.common import console, fail, open_store_for_reading, out
from ckptbench.errors import CkptbenchError


def only_filters(only: list[str]) -> dict[str, list[str]]:
    """``--only seed=1,2 --only checkpoint=a`` → {"seed": ["1", "2"], "checkpoint": ["a"]}."""
    filters: dict[str, list[str]] = {}
    for entry in only:
        factor, _, values = entry.partition("=")
        if not factor.strip() or not values.strip():
            raise CkptbenchError(f"--only {entry}: give FACTOR=VALUE, several values separated by commas "
                                 "(e.g. --only seed=1,2).")
        filters.setdefault(factor.strip(), []).extend(v.strip() for v in values.split(",") if v.strip())
    return filters


ONLY_HELP = ("Keep the images whose FACTOR has one of these values: FACTOR=VALUE or FACTOR=V1,V2 (factors: suite, "
             "prompt as suite/case, checkpoint, seed, and every sweep axis such as cfg); repeatable.")


def grid(
    store: Annotated[Path, typer.Option(help="Store folder of a finished run.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for the grid files; default: STORE/grids.")
                       ] = None,
    x: Annotated[str | None, typer.Option(
        "--x", help="Factor along the columns: seed, checkpoint, prompt or a sweep axis (cfg, steps, sampler, "
        "clip_skip, default_lora_weight, prompt_sr, hires); default: the first sweep axis, else seed.")] = None,
    y: Annotated[str, typer.Option("--y", help="Factor along the rows; default: checkpoint.")] = "checkpoint",
    only: Annotated[list[str] | None, typer.Option(metavar="FACTOR=VALUES", help=ONLY_HELP)] = None,
    scorer: Annotated[list[str] | None, typer.Option(
        metavar="SCORER", help="Scorer whose value captions each picture; repeatable; default: every per-image "
        "scorer of the run; 'none' for no score captions.")] = None,
    size: Annotated[int, typer.Option(min=16, max=4096, help="Longest side of each picture, in pixels.")] = 256,
    image_format: Annotated[str, typer.Option("--format", help="png, jpg or webp.")] = "png",
    run_id: Annotated[int | None, typer.Option("--run", help="Run id; default: the store's latest run.")] = None,
) -> None:
    """Write labelled X/Y/Z grid images (A1111-style): one file per prompt and per value of every other factor.

    Each picture is captioned with its scores, the grid with the prompt, the checkpoint names or axis values,
    and what it holds fixed; the labels and image keys are also stored in the file (PNG text, JPEG/WebP EXIF).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ckptbench.share.cells import load_cells, select
    from ckptbench.share.grid import default_axes, plan_grids, write_grids
    from ckptbench.share.grid_image import GridStyle
    from ckptbench.share.image_files import FORMATS

    try:
        if image_format not in FORMATS:
            raise CkptbenchError(f"--format {image_format}: give png, jpg or webp.")
        opened = open_store_for_reading(store)
        try:
            run = load_cells(opened, run_id)
        finally:
            opened.close()
        scorers = [] if scorer == ["none"] else (scorer or run.scorers)
        planned = plan_grids(run, select(run, only_filters(only or [])), x or default_axes(run)[0], y, scorers)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                      transient=True) as progress:
            task = progress.add_task("drawing grids", total=len(planned))
            written = write_grids(planned, out_dir or store / "grids", image_format, GridStyle(size=size),  # type: ignore[arg-type]
                                  lambda done, _total: progress.update(task, completed=done))
    except CkptbenchError as error:
        fail(error)
        return
    out.print(f"wrote {len(written)} grid image(s) to {written[0].parent}" if written else "no grid written")


export_app = typer.Typer(help="Write a run's outputs in forms to share.", no_args_is_help=True)


@export_app.command("images")
def export_images(
    store: Annotated[Path, typer.Option(help="Store folder of a finished run.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the images into.")],
    by: Annotated[str, typer.Option(help="Folders per 'checkpoint' (then suite) or per 'case'.")] = "checkpoint",
    only: Annotated[list[str] | None, typer.Option(metavar="FACTOR=VALUES", help=ONLY_HELP)] = None,
    image_format: Annotated[str, typer.Option(
        "--format", help="png (the store's files, byte for byte), jpg or webp (infotext in EXIF).")] = "png",
    run_id: Annotated[int | None, typer.Option("--run", help="Run id; default: the store's latest run.")] = None,
) -> None:
    """Copy a run's images under readable names (checkpoint, case, prompt words, seed), infotext kept, with an
    index.csv of every file's checkpoint, prompt, seed and scores."""
    from ckptbench.share.cells import load_cells, select
    from ckptbench.share.export import export_images as export
    from ckptbench.share.image_files import FORMATS

    try:
        if by not in ("checkpoint", "case"):
            raise CkptbenchError(f"--by {by}: give checkpoint or case.")
        if image_format not in FORMATS:
            raise CkptbenchError(f"--format {image_format}: give png, jpg or webp.")
        opened = open_store_for_reading(store)
        try:
            run = load_cells(opened, run_id)
            result = export(run, select(run, only_filters(only or [])), opened, out_dir, by,  # type: ignore[arg-type]
                            image_format)  # type: ignore[arg-type]
        finally:
            opened.close()
    except CkptbenchError as error:
        fail(error)
        return
    skipped = f"; {result.skipped} planned image(s) do not exist (failed)" if result.skipped else ""
    out.print(f"wrote {len(result.files)} image(s) and {result.index.name} to {out_dir}{skipped}")
