"""The ``ckptbench`` command line."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ckptbench.errors import CkptbenchError

app = typer.Typer(help="Benchmark Stable Diffusion checkpoints with pinned scorers and honest statistics.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
console = Console(stderr=True)
out = Console()


def _quiet_libraries() -> None:
    """diffusers/transformers chatter (progress bars, config notes) would bury ckptbench's own output."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*upcast_vae.*")
    for name in ("diffusers", "transformers", "huggingface_hub", "accelerate", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import diffusers
        import transformers

        diffusers.utils.logging.set_verbosity_error()
        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # pragma: no cover - quieting is best effort
        pass


def _fail(error: CkptbenchError) -> None:
    console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


@app.command()
def validate(spec: Annotated[Path, typer.Argument(help="Benchmark spec (TOML).")]) -> None:
    """Check a spec: keys, types, files, sampler and scorer names."""
    from ckptbench.generate.samplers import sampler_recipe
    from ckptbench.metrics.registry import check_scorer_names
    from ckptbench.spec import load_spec

    try:
        loaded = load_spec(spec)
        check_scorer_names(loaded)
        sampler_recipe(loaded.generation.sampler)
    except CkptbenchError as error:
        _fail(error)
        return
    cases = sum(len(s.prompts) for s in loaded.suites)
    images = cases * len(loaded.generation.seeds) * len(loaded.checkpoints)
    out.print(f"{spec}: valid — {len(loaded.checkpoints)} checkpoints × {cases} cases × "
              f"{len(loaded.generation.seeds)} seeds = {images} images, scorers: {', '.join(loaded.scorers.use)}")


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="Benchmark spec (TOML).")],
    store: Annotated[Path | None, typer.Option(help="Store folder; overrides the spec's [benchmark] store.")] = None,
) -> None:
    """Generate, score and report; resumes from whatever the store already holds."""
    _quiet_libraries()
    from ckptbench.runner import run_benchmark
    from ckptbench.spec import load_spec

    try:
        outcome = run_benchmark(load_spec(spec), store, console)
    except CkptbenchError as error:
        _fail(error)
        return
    _summarize(outcome)


@app.command()
def demo(out_dir: Annotated[Path, typer.Option("--out", help="Folder for the demo.")] = Path("demo")) -> None:
    """Build two tiny random checkpoints, benchmark them and write the report (about a minute on a CPU)."""
    _quiet_libraries()
    from ckptbench.demo import build_demo_models, write_demo_spec
    from ckptbench.runner import run_benchmark
    from ckptbench.spec import load_spec

    console.print("[bold]ckptbench demo[/]: the checkpoints and scorer models are tiny and RANDOM — the "
                  "numbers only show that every stage works, not which model is better.")
    try:
        with console.status("building tiny random models (real classes, real file formats)…"):
            build_demo_models(out_dir / "models")
        spec_path = write_demo_spec(out_dir)
        outcome = run_benchmark(load_spec(spec_path), None, console)
    except CkptbenchError as error:
        _fail(error)
        return
    _summarize(outcome)
    out.print(f"spec: {spec_path}  (run it again with `ckptbench run {spec_path}`)")


@app.command()
def report(
    store: Annotated[Path, typer.Option(help="Store folder of a finished run.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to write; default: the store.")] = None,
) -> None:
    """Rebuild results.json, scores.csv and report/index.html from a store's latest run."""
    from ckptbench.report.outputs import write_outputs
    from ckptbench.store import Store

    try:
        if not (store / "ckptbench.sqlite").is_file():
            raise CkptbenchError(f"{store}: no ckptbench store here (ckptbench.sqlite missing); give the "
                                 "folder a run wrote to.")
        opened = Store(store)
        try:
            results_path, report_path = write_outputs(opened, None, out_dir, console)
        finally:
            opened.close()
    except CkptbenchError as error:
        _fail(error)
        return
    out.print(f"results: {results_path}\nreport: {report_path}")


def _summarize(outcome: object) -> None:
    from ckptbench.runner import RunOutcome

    assert isinstance(outcome, RunOutcome)
    out.print(f"generated {outcome.generated} images, computed {outcome.scored} scores "
              f"(reused {outcome.cached_images} images and {outcome.cached_scores} scores from the store)")
    if outcome.failed_checkpoints:
        out.print(f"[red]failed checkpoints[/]: {', '.join(outcome.failed_checkpoints)} (see the report)")
    out.print(f"results: {outcome.results_path}\nreport: {outcome.report_path}")


def main() -> None:  # pragma: no cover
    sys.exit(app())
