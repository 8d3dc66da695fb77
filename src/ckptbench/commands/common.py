"""What every command shares: the consoles, the one-sentence failure, quiet libraries, reading a store.

Light to import (typer, rich): the heavy libraries are imported by the commands that use them."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

from ckptbench.errors import CkptbenchError

if TYPE_CHECKING:
    from ckptbench.store import Store

console = Console(stderr=True)
out = Console()


def quiet_libraries() -> None:
    """diffusers/transformers chatter (progress bars, config notes) would bury ckptbench's own output.

    Only environment variables, warning filters and logger levels: importing diffusers or transformers
    here would cost seconds in commands that never use them. The libraries read these variables when
    (and if) they are imported; ``TQDM_DISABLE`` silences the tqdm bars diffusers shows while loading.
    """
    for variable, value in (("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TOKENIZERS_PARALLELISM", "false"),
                            ("DIFFUSERS_VERBOSITY", "error"), ("TRANSFORMERS_VERBOSITY", "error"),
                            ("HF_HUB_VERBOSITY", "error"), ("TQDM_DISABLE", "1")):
        os.environ.setdefault(variable, value)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*upcast_vae.*")
    for name in ("diffusers", "transformers", "huggingface_hub", "accelerate", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)


def fail(error: CkptbenchError) -> NoReturn:
    from rich.markup import escape

    from ckptbench.outcome import EXIT_BAD_INPUT

    console.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=EXIT_BAD_INPUT)


def open_store_for_reading(store: Path) -> Store:
    from ckptbench.store import Store

    if not (store / "ckptbench.sqlite").is_file():
        raise CkptbenchError(f"{store}: no ckptbench store here (ckptbench.sqlite missing); give the folder a run "
                             "wrote to.")
    return Store(store, read_only=True)
