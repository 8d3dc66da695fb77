"""``ckptbench import ghostreview`` and ``ckptbench import infotext``: results or prompts made elsewhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape as escape_markup

from ckptbench.commands.common import console, fail, out
from ckptbench.errors import CkptbenchError

import_app = typer.Typer(help="Bring results or prompts made elsewhere into ckptbench.", no_args_is_help=True)


@import_app.command("ghostreview")
def import_ghostreview(
    folder: Annotated[Path, typer.Argument(help="The GhostReview release folder (holds dataresult/).")],
    store: Annotated[Path, typer.Option(help="Store folder to import into (created if missing).")],
    name: Annotated[str, typer.Option(help="Benchmark name shown in the report.")] = "GhostReview (imported)",
    baseline: Annotated[str | None, typer.Option(help="Checkpoint to anchor scores to.")] = None,
    bootstrap: Annotated[int, typer.Option(min=100, help="Bootstrap resamples (for the rank distributions).")] = 1000,
    rank_by: Annotated[str | None, typer.Option(
        "--rank-by", help="Rank by this scorer, or by 'composite' (recorded with the run; `report --rank-by` "
        "overrides it); default: laion-aesthetic-v2, the release's first score column.")] = None,
) -> None:
    """Import GhostReview's per-image results as a run; then `ckptbench report --store STORE`."""
    from ckptbench.imports.ghostreview import import_results
    from ckptbench.store import Store

    try:
        opened = Store(store)
        try:
            with opened.exclusive():
                run_id = import_results(opened, folder, name=name, baseline=baseline, bootstrap=bootstrap,
                                        rank_by=rank_by)
        finally:
            opened.close()
    except CkptbenchError as error:
        fail(error)
        return
    out.print(f"imported {folder} into {store} as run {run_id}; write the report with "
              f"`ckptbench report --store {store}`")


@import_app.command("infotext")
def import_infotext(
    source: Annotated[Path, typer.Argument(
        help="An image, or a folder of images (subfolders too, e.g. a store's images/), carrying A1111 infotext.")],
    out_file: Annotated[Path, typer.Option("--out", help="Suite file to write.")] = Path("suite.toml"),
    name: Annotated[str | None, typer.Option(help="Suite name; default: the output file's name.")] = None,
    kind: Annotated[str | None, typer.Option(help="quality, style or lora; default: lora when the prompts "
                                                  "carry <lora:…> tags, else quality.")] = None,
) -> None:
    """Write a suite file with one case per image: its prompt, negative prompt, LoRAs and showcase model."""
    from ckptbench.suites.infotext_suite import cases_from_images
    from ckptbench.suites.toml_suite import write_suite_file

    try:
        if kind not in (None, "quality", "style", "lora"):
            raise CkptbenchError(f"--kind '{kind}': give quality, style or lora.")
        suite_name = name or out_file.stem
        cases, skipped = cases_from_images(source, suite_name, kind)  # type: ignore[arg-type]
        if not cases:
            raise CkptbenchError(f"{source}: no image carries A1111 infotext; nothing to write.")
        suite_kind = kind or ("lora" if any(c.kind == "lora" for c in cases) else "quality")
        write_suite_file(out_file, cases, name=suite_name, kind=suite_kind,  # type: ignore[arg-type]
                         description=f"imported from the infotext of {len(cases)} image(s)")
    except CkptbenchError as error:
        fail(error)
        return
    for path in skipped[:10]:
        console.print(f"[yellow]skipped[/]: {escape_markup(str(path))} (no A1111 infotext)", highlight=False)
    if len(skipped) > 10:
        console.print(f"[yellow]skipped[/]: {len(skipped) - 10} more image(s) without A1111 infotext")
    out.print(f"wrote {out_file}: {len(cases)} case(s), kind {suite_kind}"
              + (f"; {len(skipped)} image(s) without infotext skipped" if skipped else ""))
