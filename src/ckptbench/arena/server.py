"""The arena's web app (Starlette, served by uvicorn): a page, its two assets, pairs, images, votes.

What it serves, and nothing else: ``/`` (the page), ``/arena.js``, ``/arena.css``, ``/api/config``,
``/api/next`` (issue a pair), ``/image/{token}/{left|right}`` (an issued pair's image, read from the path the
store recorded for it, with its text chunks removed so the infotext cannot name the checkpoint) and
``/api/vote`` (a JSON body of at most ``MAX_BODY`` bytes: an issued token and a choice). No route takes a
file path, so there is nothing to traverse; unknown paths are 404, bad requests 4xx with a JSON reason.
Bound to a loopback address it answers only requests addressed to a loopback host name (a page on another
site cannot reach it through DNS rebinding).
"""

from __future__ import annotations

import json
import random
import re
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ckptbench.arena.pairs import PENDING_SECONDS, PairChooser, arena_cells
from ckptbench.arena.votes import CHOICES, UI_VERSION, IssuedPair, VoteBook, VoteError, new_token
from ckptbench.errors import CkptbenchError, StoreError
from ckptbench.store import Store

MAX_BODY = 1024
TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
RATER = re.compile(r"[\w .@+-]{1,40}")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = {b"tEXt", b"iTXt", b"zTXt", b"eXIf"}
_ASSETS = {"/": ("arena.html", "text/html; charset=utf-8"), "/arena.js": ("arena.js", "text/javascript"),
           "/arena.css": ("arena.css", "text/css")}


@dataclass
class Arena:
    """What the app serves from: the run's pool of cells, the image files, and the vote book."""

    root: Path
    run_id: int
    suite: str | None
    default_rater: str
    chooser: PairChooser
    image_paths: dict[str, str]  # image key → path relative to the store
    book: VoteBook


def open_arena(root: Path, *, suite: str | None = None, rater: str = "rater", seed: int | None = None) -> Arena:
    """The arena of a store's latest run; one clear error when there is nothing to compare."""
    store = Store(root, read_only=True) if (Path(root) / "ckptbench.sqlite").is_file() else None
    if store is None:
        raise StoreError(f"{root}: no ckptbench store here; run `ckptbench run SPEC.toml` first, or give the "
                         "store folder with --store.")
    try:
        run = store.latest_run()
        if run is None:
            raise StoreError(f"{root}: no run recorded in this store; run `ckptbench run SPEC.toml` first.")
        rows = store.run_item_rows(int(run["run_id"]))
    finally:
        store.close()
    suites = sorted({str(row["suite"]) for row in rows})
    if suite is not None and suite not in suites:
        raise CkptbenchError(f"--suite '{suite}': the latest run of {root} has no such suite; name one of: "
                             f"{', '.join(suites)}.")
    cells = arena_cells(rows, suite)
    if not cells:
        raise CkptbenchError(f"{root}: the latest run has no case and seed with images from two checkpoints; the "
                             "arena compares checkpoints on the same case and seed.")
    if not RATER.fullmatch(rater):
        raise CkptbenchError(f"--rater '{rater}': use 1 to 40 letters, digits, spaces or . @ + - _.")
    paths = {str(row["image_key"]): str(row["image"]) for row in rows if row["image"] is not None}
    return Arena(Path(root), int(run["run_id"]), suite, rater, PairChooser(cells, random.Random(seed)), paths,
                 VoteBook(root))


def create_app(arena: Arena, *, allowed_hosts: tuple[str, ...] | None = LOOPBACK_HOSTS) -> Starlette:
    """``allowed_hosts``: the Host header values answered (None: any, for a server bound to a LAN address)."""
    assets = {path: (resources.files("ckptbench.arena").joinpath("static", name).read_bytes(), media)
              for path, (name, media) in _ASSETS.items()}

    async def asset(request: Request) -> Response:
        body, media = assets[request.url.path]
        return Response(body, media_type=media, headers={"Cache-Control": "no-cache"})

    async def config(request: Request) -> Response:
        return JSONResponse({"rater": arena.default_rater, "suite": arena.suite, "ui_version": UI_VERSION,
                             "cells": len(arena.chooser.cells), "checkpoints": len(arena.chooser.names),
                             "choices": list(CHOICES)})

    async def next_pair(request: Request) -> Response:
        rater = request.query_params.get("rater", arena.default_rater)
        if not RATER.fullmatch(rater):
            return _error("rater: use 1 to 40 letters, digits, spaces or . @ + - _.", 400)
        return JSONResponse(issue_pair(arena, rater))

    async def image(request: Request) -> Response:
        token, side = request.path_params["token"], request.path_params["side"]
        pair = arena.book.pair(token) if TOKEN.fullmatch(token) else None
        if pair is None or side not in ("left", "right"):
            return _error("no such image.", 404)
        key = pair.left_key if side == "left" else pair.right_key
        relative = arena.image_paths.get(key)
        if relative is None:
            return _error("no such image.", 404)
        data = (arena.root / relative).read_bytes()
        return Response(strip_png_text(data), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})

    async def vote(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error("send the vote as application/json.", 415)
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            return _error(f"a vote is at most {MAX_BODY} bytes.", 413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return _error(f"a vote is at most {MAX_BODY} bytes.", 413)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _error("the body is not JSON.", 400)
        if not isinstance(payload, dict) or set(payload) != {"token", "choice"}:
            return _error('send {"token": …, "choice": …} and nothing else.', 400)
        token, choice = payload["token"], payload["choice"]
        if not isinstance(token, str) or not TOKEN.fullmatch(token) or not isinstance(choice, str):
            return _error("token and choice must be strings of the form the arena issues.", 400)
        try:
            recorded = arena.book.record(token, choice)
        except VoteError as error:
            return _error(str(error), error.status)
        return JSONResponse({"ok": True, "choice": recorded["choice"]})

    routes = [Route(path, asset) for path in assets]
    routes += [Route("/api/config", config), Route("/api/next", next_pair),
               Route("/image/{token}/{side}", image), Route("/api/vote", vote, methods=["POST"])]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))] if allowed_hosts else []
    return Starlette(routes=routes, middleware=middleware)


def issue_pair(arena: Arena, rater: str) -> dict[str, Any]:
    """Choose, record and describe the next pair for ``rater`` ({"done": true} when none is left)."""
    now = time.time()
    votes = arena.book.votes()
    pending = arena.book.shown_since(rater, now - PENDING_SECONDS)
    choice = arena.chooser.choose(rater, votes, pending)
    if choice is None:
        return {"done": True, "votes": sum(1 for v in votes if v["rater"] == rater)}
    cell = choice.cell
    pair = IssuedPair(new_token(), rater, arena.run_id, cell.suite, cell.case_id, cell.prompt, cell.seed,
                      cell.images[choice.left], cell.images[choice.right], choice.left, choice.right, now)
    arena.book.issue(pair)
    return {"done": False, "token": pair.token, "prompt": cell.prompt, "suite": cell.suite, "seed": cell.seed,
            "left": f"/image/{pair.token}/left", "right": f"/image/{pair.token}/right",
            "votes": sum(1 for v in votes if v["rater"] == rater)}


def strip_png_text(data: bytes) -> bytes:
    """The PNG without its text and EXIF chunks (the A1111 infotext names the model); other bytes as they are."""
    if not data.startswith(_PNG_SIGNATURE):
        return data
    kept, position = [_PNG_SIGNATURE], len(_PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        end = position + 12 + length
        if kind not in _TEXT_CHUNKS:
            kept.append(data[position:end])
        position = end
    return b"".join(kept)


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def serve(app: Starlette, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve until Ctrl-C; ``port`` 0 takes a free one. ``on_ready`` gets the URL once the socket is bound."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise CkptbenchError(f"--host {host} --port {port}: cannot listen there ({error.strerror}); choose another "
                             "--port, or 0 for a free one.") from None
    bound = sock.getsockname()[1]
    on_ready(f"http://{'[' + host + ']' if family == socket.AF_INET6 else host}:{bound}/")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])
