"""The ``ckptbench`` command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape as escape_markup

from ckptbench.arena import commands as arena_commands
from ckptbench.commands import imports as import_commands
from ckptbench.commands import share as share_commands
from ckptbench.commands.common import console, fail, out, quiet_libraries
from ckptbench.errors import CkptbenchError

if TYPE_CHECKING:
    from ckptbench.stop import StopFlag

EXIT_CODES_HELP = ("Exit codes: 0 everything made and scored; 2 bad input (nothing ran); 3 partial (some images or "
                   "scores missing); 4 failed (no checkpoint made an image); 5 a `check` threshold not met; "
                   "130 interrupted (run again to resume).")
# rich_markup_mode=None: help texts are plain text, so "[scorers]" or "<lora:name>" are printed as written.
app = typer.Typer(help="Benchmark Stable Diffusion checkpoints with pinned scorers and honest statistics. "
                  + EXIT_CODES_HELP, no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  rich_markup_mode=None)


@app.command()
def validate(spec: Annotated[Path, typer.Argument(help="Benchmark spec (TOML).")]) -> None:
    """Check a spec as a run would before loading any weights: keys and types, suites and reference folders,
    scorer weights and folder layouts, checkpoint headers and sizes against their family or `config`,
    LoRA and embedding names. Prints the run's own message for each problem; exit code 2 when a run would
    fail or leave something out, 0 when it is valid."""
    quiet_libraries()
    from rich.markup import escape

    from ckptbench.outcome import EXIT_BAD_INPUT
    from ckptbench.validate import validate_spec

    try:
        checked = validate_spec(spec, console)
    except CkptbenchError as error:
        fail(error)
        return
    from ckptbench.report.terminal import print_notes

    print_notes({}, checked.skipped, console)
    for note in checked.notes:
        console.print(f"[yellow]note[/]: {escape(note)}", highlight=False)
    for problem in checked.plan.checkpoints:
        if problem.error:
            console.print(f"[red]error:[/] {escape(problem.error)}", highlight=False, soft_wrap=True)
    for message in checked.plan.image_problems:
        console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if checked.problems:
        failed = sum(1 for work in checked.plan.checkpoints if work.error)
        left_out = len(checked.plan.skipped_cases)
        refused = len(checked.plan.image_problems)
        parts = [f"{failed} checkpoint(s) would fail" if failed else "",
                 f"{left_out} case(s) would be left out" if left_out else "",
                 f"{refused} kind(s) of image would fail" if refused else ""]
        console.print(f"{escape(str(spec))}: not valid — {' and '.join(p for p in parts if p)} (the messages above "
                      "are the run's own; a run would go on without them: exit code 3, or 4 when no checkpoint is "
                      "left).",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(code=EXIT_BAD_INPUT)
    loaded, suites = checked.spec, checked.suites
    from ckptbench.sweep import variants

    sweep = len(variants(loaded.generation.sweep))
    per_variant = sum(len(s.cases) * len(s.seeds) for s in suites)
    per_checkpoint = per_variant * sweep
    seed_counts = {len(s.seeds) for s in suites}
    cases = sum(len(s.cases) for s in suites)
    shape = (f"{cases} cases × {seed_counts.pop()} seeds" if len(seed_counts) == 1 else
             f"{per_variant} images ({', '.join(f'{s.name}: {len(s.cases)}×{len(s.seeds)}' for s in suites)})")
    if sweep > 1:
        shape += f" × {sweep} sweep variants ({' × '.join(a.name for a in loaded.generation.sweep)})"
    out.print(f"{spec}: valid — {len(loaded.checkpoints)} checkpoints × {shape} = "
              f"{per_checkpoint * len(loaded.checkpoints)} images; suites: "
              f"{', '.join(f'{s.name} ({s.kind})' for s in suites)}; scorers: {', '.join(loaded.scorers.use)}",
              highlight=False)


@app.command()
def run(
    spec: Annotated[Path, typer.Argument(help="Benchmark spec (TOML).")],
    store: Annotated[Path | None, typer.Option(help="Store folder; overrides the spec's [benchmark] store.")] = None,
    executor: Annotated[str | None, typer.Option(
        help="'local' (this process) or 'ray' (a Ray cluster); overrides the spec's [benchmark] executor.")] = None,
    address: Annotated[str | None, typer.Option(
        help="Ray cluster address ('auto', 'ray://host:10001'); default: a local Ray instance.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print what would be generated and scored (cached vs new) and a time estimate from "
        "earlier runs; load no model, record no run.")] = False,
    retry_failed: Annotated[bool, typer.Option(
        "--retry-failed/--skip-failed", help="Images that failed in an earlier run are not in the store, so a run "
        "tries them again (the default, and it says how many); --skip-failed leaves them out and records them "
        "as failures of this run.")] = True,
    rank_by: Annotated[str | None, typer.Option(
        "--rank-by", help="Rank by this scorer, by 'composite', or by 'human' (arena votes in the store); default: the "
        "composite when the spec gives "
        "weights, else the first scorer the spec names.")] = None,
) -> None:
    """Generate, score and report; resumes from whatever the store already holds.

    Ctrl-C finishes the batch in progress, saves it, writes the outputs for what exists and exits with
    code 130; a second Ctrl-C stops at once (the store stays consistent). Run the same command to resume.
    Exit codes: 0 everything planned was made and scored; 2 bad input, nothing ran; 3 partial (some
    images or scores missing: see the failures); 4 failed (no checkpoint made an image); 130 interrupted.
    """
    quiet_libraries()
    from ckptbench.spec_load import load_spec

    resume = f"ckptbench run {spec}" + (f" --store {store}" if store else "") + (
        f" --executor {executor}" if executor else "") + (f" --address {address}" if address else "") + (
        f" --rank-by {rank_by}" if rank_by else "")

    def work(stop: StopFlag) -> object:
        if executor not in (None, "local", "ray"):
            raise CkptbenchError(f"--executor '{executor}': give 'local' or 'ray'.")
        loaded = load_spec(spec)
        if rank_by is not None:
            from ckptbench.analysis.results import spec_with_rank_by

            loaded = spec_with_rank_by(loaded, rank_by)
        if dry_run:
            from ckptbench.dry_run import dry_run as plan_run
            from ckptbench.dry_run import render

            render(plan_run(loaded, store, console, executor=executor, ray_address=address,  # type: ignore[arg-type]
                            retry_failed=retry_failed), out)
            return None
        from ckptbench.runner import run_benchmark

        return run_benchmark(loaded, store, console, executor=executor, ray_address=address,  # type: ignore[arg-type]
                             stop=stop, retry_failed=retry_failed)

    outcome = _interruptible(work, resume)
    if outcome is None:  # a dry run
        return
    _summarize(outcome)
    _exit_with_status(outcome, resume)


def _interruptible(work: Callable[[StopFlag], object], resume: str) -> object:
    """Run ``work`` with Ctrl-C turned into a stop request; errors become one message and exit code 2."""
    from ckptbench.stop import INTERRUPTED_EXIT_CODE, StopFlag, stop_on_interrupt

    stop = StopFlag()
    try:
        with stop_on_interrupt(stop):
            return work(stop)
    except CkptbenchError as error:
        fail(error)
    except KeyboardInterrupt:
        console.print(f"[yellow]stopped at once[/] (second Ctrl-C): what was saved is kept and the store is "
                      f"consistent; resume with `{resume}`.", highlight=False, soft_wrap=True)
        raise typer.Exit(code=INTERRUPTED_EXIT_CODE) from None


def _exit_with_status(outcome: object, resume: str) -> None:
    """Exit with the code of the run's status (``ckptbench.outcome``), saying how to resume an interrupted run."""
    from rich.markup import escape

    from ckptbench.outcome import exit_code
    from ckptbench.runner import RunOutcome

    assert isinstance(outcome, RunOutcome)
    if outcome.interrupted:
        cancelled = "; Ray tasks still running were cancelled" if outcome.executor == "ray" else ""
        console.print(f"[yellow]interrupted[/]: everything finished before the stop is saved (the batch in "
                      f"progress was completed{cancelled}) and the outputs show what exists so far. Resume with "
                      f"`{escape(resume)}` (work already done is not redone).", highlight=False, soft_wrap=True)
    elif outcome.status != "ok":
        console.print(f"[red]{outcome.status}[/]: " + (
            "no checkpoint made an image" if outcome.status == "failed" else
            "some images or scores are missing") + f"; exit code {exit_code(outcome.status)} (the failures are "
            "listed above, in results.json and in the report).", highlight=False, soft_wrap=True)
    code = exit_code(outcome.status)
    if code:
        raise typer.Exit(code=code)


@app.command()
def demo(out_dir: Annotated[Path, typer.Option("--out", help="Folder for the demo.")] = Path("demo")) -> None:
    """Build two tiny random checkpoints, benchmark them and write the report (about a minute on a CPU)."""
    # Said before the heavy imports: loading torch, diffusers and transformers takes seconds on its own.
    console.print("[bold]ckptbench demo[/]: the checkpoints and scorer models are tiny and RANDOM — the "
                  "numbers only show that every stage works, not which model is better.")
    with console.status("loading torch, diffusers and transformers …"):
        quiet_libraries()
        from ckptbench.demo.command import build_demo_models, write_demo_spec
        from ckptbench.runner import run_benchmark
        from ckptbench.spec_load import load_spec
    try:
        with console.status("building tiny random models (real classes, real file formats) …"):
            build_demo_models(out_dir / "models")
        spec_path = write_demo_spec(out_dir)
    except CkptbenchError as error:
        fail(error)
        return
    resume = f"ckptbench run {spec_path}"
    outcome = _interruptible(lambda stop: run_benchmark(load_spec(spec_path), None, console, stop=stop), resume)
    _summarize(outcome)
    out.print(f"spec: {spec_path}  (run it again with `{resume}`)", highlight=False)
    _exit_with_status(outcome, resume)


@app.command()
def check(
    results: Annotated[Path, typer.Argument(help="A run's results.json, or the store folder holding it.")],
    at_least: Annotated[list[str] | None, typer.Option(
        "--min", help="SCORER=VALUE: every checkpoint's mean must be at least VALUE (repeat for more scorers).")
    ] = None,
    at_most: Annotated[list[str] | None, typer.Option(
        "--max", help="SCORER=VALUE: every checkpoint's mean must be at most VALUE (losses, distances).")] = None,
    checkpoint: Annotated[list[str] | None, typer.Option(
        help="Check only this checkpoint (repeat for more); default: every checkpoint of the run.")] = None,
    suite: Annotated[str | None, typer.Option(
        help="Read the means of this suite; default: over all images of the run.")] = None,
    allow_partial: Annotated[bool, typer.Option(
        "--allow-partial", help="Pass a run with some images or scores missing (a failed run still fails).")
    ] = False,
) -> None:
    """Gate CI on a finished run: its status (failed, partial) and score thresholds.

    Prints one line per gate. Exit codes: 0 every gate passed; 4 the run (or a checked checkpoint) failed;
    3 the run is partial (unless --allow-partial); 5 a threshold is not met; 2 the file or an option is wrong.
    """
    from rich.markup import escape

    from ckptbench.check import check_results, load_results, parse_threshold

    try:
        thresholds = ([parse_threshold(text, True) for text in at_least or []]
                      + [parse_threshold(text, False) for text in at_most or []])
        outcome = check_results(load_results(results), thresholds, checkpoint or [], allow_partial, suite)
    except CkptbenchError as error:
        fail(error)
        return
    for passed, text in outcome.lines:
        out.print(f"{'[green]pass[/]' if passed else '[red]FAIL[/]'}  {escape(text)}", highlight=False, soft_wrap=True)
    if outcome.code:
        raise typer.Exit(code=outcome.code)


@app.command()
def report(
    store: Annotated[Path, typer.Option(help="Store folder of a finished run.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to write; default: the store.")] = None,
    rank_by: Annotated[str | None, typer.Option(
        "--rank-by", help="Rank by this scorer, by 'composite', or by 'human' (the store's arena votes); default: the "
        "composite when the run's spec gives "
        "weights, else the first scorer it names.")] = None,
) -> None:
    """Rebuild results.json, scores.csv/.parquet, leaderboard.csv and report/index.html from a store's latest run.

    Reads the store only, so it is safe while a run writes to it; the outputs of a run in progress then go
    elsewhere (--out), since the run writes its own when it finishes.
    """
    from ckptbench.errors import StoreError
    from ckptbench.report.outputs import write_outputs
    from ckptbench.store import Store

    try:
        if not (store / "ckptbench.sqlite").is_file():
            raise CkptbenchError(f"{store}: no ckptbench store here (ckptbench.sqlite missing); give the "
                                 "folder a run wrote to.")
        opened = Store(store, read_only=True)
        holder = opened.lock_holder()
        if holder is not None and (out_dir is None or out_dir.resolve() == store.resolve()):
            opened.close()
            raise StoreError(f"{store}: a ckptbench run (pid {holder}) is writing to this store and writes its "
                             "outputs here when it finishes; give --out FOLDER for a report of the run so far, or "
                             "wait for it.")
        try:
            results_path, report_path = write_outputs(opened, None, out_dir, console, rank_by=rank_by)
        finally:
            opened.close()
    except CkptbenchError as error:
        fail(error)
        return
    from ckptbench.report.terminal import verdict_lines

    for line in verdict_lines(json.loads(results_path.read_text())):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    out.print(f"results: {results_path}\nreport: {report_path}")


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="A model file (.safetensors, or a pickle) or a diffusers folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full report as JSON.")] = False,
    allow_pickle: Annotated[bool, typer.Option(
        "--allow-pickle", help="Read a pickle with torch.load(weights_only=True) instead of refusing it.")] = False,
) -> None:
    """Family, prediction type, dtype, parameters, hashes, metadata, kind and safety verdict of a model file."""
    quiet_libraries()
    from ckptbench.models.inspection import inspect_path

    try:
        report = inspect_path(path, allow_pickle)
    except CkptbenchError as error:
        fail(error)
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
    fields = ("path", "kind", "format", "arch", "prediction", "prediction_source", "zero_terminal_snr", "dtype",
              "parameters",
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
        fail(error)
        return
    out.print(f"wrote {target}: {summary['tensors']} tensors, {summary['bytes']:,} bytes, sha256 {summary['sha256']}")


@app.command()
def scorers() -> None:
    """List the registered scorers: id, version, level, backbone, default weights, direction and scale."""
    from rich.table import Table

    from ckptbench.metrics.registry import SCORERS

    table = Table(show_lines=False)
    for column in ("id", "version", "level", "backbone", "default weights", "better", "scale"):
        table.add_column(column, overflow="fold")
    for name, entry in SCORERS.items():
        table.add_row(name, entry.version, entry.level, entry.backbone_kind, entry.default_weights,
                      "higher" if entry.higher_is_better else "lower", entry.scale)
    out.print(table)


@app.command()
def score(
    folder: Annotated[Path, typer.Argument(help="Folder of images made elsewhere (searched recursively).")],
    spec: Annotated[Path, typer.Option(help="Spec whose [scorers] section names the scorers.")],
    out_path: Annotated[Path, typer.Option("--out", help="CSV to write: image, prompt, scorer, value.")] = Path(
        "scores.csv"),
    store: Annotated[Path | None, typer.Option(help="Store that keeps embeddings and scores between calls; "
                                                    "default: a temporary one.")] = None,
    device: Annotated[str, typer.Option(help="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")] = "auto",
) -> None:
    """Score a folder of images (prompt from each PNG's A1111 infotext, else a sidecar .txt)."""
    quiet_libraries()
    import tempfile

    from ckptbench.atomic import atomic_write_text
    from ckptbench.device import resolve_device
    from ckptbench.report.terminal import print_notes
    from ckptbench.score_folder import score_folder
    from ckptbench.spec_load import load_scorers_spec
    from ckptbench.store import Store

    try:
        scorers_spec = load_scorers_spec(spec)
        with tempfile.TemporaryDirectory(prefix="ckptbench-score-") as scratch:
            opened = Store(store or Path(scratch))
            try:
                result = score_folder(folder, scorers_spec, opened, resolve_device(device))
            finally:
                opened.close()
    except CkptbenchError as error:
        fail(error)
        return
    print_notes(result.truncated, result.skipped, console)
    for failure in result.failures:
        console.print(f"[red]failed[/]: {escape_markup(str(failure))}", highlight=False)
    atomic_write_text(out_path, result.csv_text())
    out.print(f"{result.scored} scores of {result.images} images written to {out_path}")


app.command()(arena_commands.arena)
app.command()(arena_commands.votes)
app.add_typer(import_commands.import_app, name="import")
app.command()(share_commands.grid)
app.add_typer(share_commands.export_app, name="export")

def _summarize(outcome: object) -> None:
    from rich.markup import escape

    from ckptbench.runner import RunOutcome

    assert isinstance(outcome, RunOutcome)
    if outcome.results_path and outcome.results_path.is_file():
        from ckptbench.report.terminal import leaderboard_table, verdict_lines

        results = json.loads(outcome.results_path.read_text())
        out.print(leaderboard_table(results))
        for line in verdict_lines(results):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    out.print(f"generated {outcome.generated} images, computed {outcome.scored} scores "
              f"(reused {outcome.cached_images} images and {outcome.cached_scores} scores from the store)")
    if outcome.failed_checkpoints:
        out.print(f"[red]failed checkpoints[/]: {escape(', '.join(outcome.failed_checkpoints))} (see the report)")
    if outcome.failures:
        counts = ", ".join(f"{count} {scope}" for scope, count in sorted(outcome.failures.items()))
        out.print(f"recorded failures and warnings: {counts} (listed under failures in results.json and the report)")
    out.print(f"status: {outcome.status}", highlight=False)
    out.print(f"results: {outcome.results_path}\nreport: {outcome.report_path}", highlight=False)


def main() -> None:  # pragma: no cover
    sys.exit(app())
