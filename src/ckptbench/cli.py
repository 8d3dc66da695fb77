"""The ``ckptbench`` command line."""

from __future__ import annotations

import json
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
    from ckptbench.runner import write_outputs
    from ckptbench.store import Store

    try:
        if not (store / "ckptbench.sqlite").is_file():
            raise CkptbenchError(f"{store}: no ckptbench store here (ckptbench.sqlite missing); give the "
                                 "folder a run wrote to.")
        opened = Store(store)
        try:
            results_path, report_path = write_outputs(opened, None, out_dir)
        finally:
            opened.close()
    except CkptbenchError as error:
        _fail(error)
        return
    out.print(f"results: {results_path}\nreport: {report_path}")


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="A model file (.safetensors, or a pickle) or a diffusers folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
    allow_pickle: Annotated[bool, typer.Option(
        "--allow-pickle", help="Read a pickle with torch.load(weights_only=True) instead of refusing it.")] = False,
) -> None:
    """Family, prediction type, dtype, parameters, hashes, metadata, kind and safety verdict of a model file."""
    _quiet_libraries()
    from ckptbench.models.inspection import inspect_path

    try:
        report = inspect_path(path, allow_pickle)
    except CkptbenchError as error:
        _fail(error)
        return
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, default=str, indent=2))
    else:
        _print_inspection(report)
    if not report["safe"]:
        if not as_json:
            console.print(f"[red]refused:[/] {report['error']}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2)


def _print_inspection(report: dict[str, object]) -> None:
    from rich.table import Table

    table = Table(show_header=False, box=None)
    fields = ("path", "kind", "format", "arch", "prediction", "prediction_source", "dtype", "parameters",
              "components", "sha256", "autov2", "safe", "safety", "problem")
    for field in fields:
        value = report.get(field)
        if value not in (None, {}, []):
            table.add_row(field, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
    out.print(table)
    for label in ("evidence", "notes", "warnings"):
        for line in report.get(label) or []:  # type: ignore[union-attr]
            out.print(f"  {label[:-1] if label.endswith('s') else label}: {line}", highlight=False)
    metadata = report.get("metadata") or {}
    if metadata:
        out.print("metadata:")
        for key, value in metadata.items():  # type: ignore[union-attr]
            text = value if isinstance(value, str) else json.dumps(value)
            out.print(f"  {key}: {text[:200]}{'…' if len(text) > 200 else ''}", highlight=False)


@app.command()
def convert(
    source: Annotated[Path, typer.Argument(help="The pickle checkpoint (.ckpt/.pt/.pth/.bin).")],
    target: Annotated[Path, typer.Argument(help="The .safetensors file to write.")],
    allow_pickle: Annotated[bool, typer.Option(
        "--allow-pickle", help="Required: read SOURCE with torch.load(weights_only=True).")] = False,
) -> None:
    """Convert a pickle checkpoint to .safetensors without ever executing pickled code."""
    from ckptbench.models.convert import convert_to_safetensors

    try:
        summary = convert_to_safetensors(source, target, allow_pickle)
    except CkptbenchError as error:
        _fail(error)
        return
    out.print(f"wrote {target}: {summary['tensors']} tensors, {summary['bytes']:,} bytes, sha256 {summary['sha256']}")


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
