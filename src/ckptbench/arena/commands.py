"""``ckptbench arena`` and ``ckptbench votes``: the command-line side of the arena (light to import)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ckptbench.errors import CkptbenchError

console = Console(stderr=True)
out = Console()


def _default_rater() -> str:
    try:
        return getpass.getuser() or "rater"
    except (KeyError, OSError):  # no user name on this system (a container without /etc/passwd entry)
        return "rater"


def arena(
    store: Annotated[Path, typer.Option(help="Store folder of a finished run.")],
    suite: Annotated[str | None, typer.Option(help="Compare only this suite's images; default: every suite.")] = None,
    rater: Annotated[str | None, typer.Option(
        help="Name your votes are recorded under (changeable on the page); default: your user name.")] = None,
    host: Annotated[str, typer.Option(
        help="Address to listen on. The default serves this machine only; give this machine's LAN address "
        "(or 0.0.0.0) to let other machines vote too.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 takes a free one.")] = 8765,
) -> None:
    """Blind A/B votes in your browser on a store's images: same case and seed, two checkpoints, names hidden.

    Every vote is saved in the store at once (Ctrl-C loses nothing); `ckptbench report` then adds a human
    preference ranking and how well each scorer agrees with your votes.
    """
    from ckptbench.arena.server import LOOPBACK_HOSTS, create_app, open_arena, serve

    try:
        opened = open_arena(store, suite=suite, rater=rater or _default_rater())
        loopback = host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
        app = create_app(opened, allowed_hosts=LOOPBACK_HOSTS if loopback else None)

        def ready(url: str) -> None:
            pool = opened.chooser
            out.print(f"arena on {url}  ({len(pool.cells)} case × seed cells, {len(pool.names)} checkpoints; "
                      "keys: ← left, → right, ↓ tie, space both bad; Ctrl-C to stop)", highlight=False)

        serve(app, host, port, ready)
    except CkptbenchError as error:
        console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    out.print(f"stopped; the votes are in {store} (export them with `ckptbench votes --store {store}`)",
              highlight=False)


def votes(
    store: Annotated[Path, typer.Option(help="Store folder holding arena votes.")],
    out_path: Annotated[Path, typer.Option("--out", help="votes.csv or votes.parquet.")] = Path("votes.csv"),
) -> None:
    """Export every arena vote of a store (all raters and sessions) as CSV or Parquet."""
    from ckptbench.arena.votes import export_votes

    try:
        count = export_votes(store, out_path)
    except CkptbenchError as error:
        console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    out.print(f"{count} votes written to {out_path}", highlight=False)
