"""A real arena server (uvicorn on a free loopback port, in a thread) for the browser, load and race tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from ckptbench.arena.server import create_app, open_arena


@contextmanager
def running_arena(store: Path, *, rater: str = "tester", seed: int = 0) -> Iterator[str]:
    """Yield the base URL of an arena on ``store``; the server stops when the block ends."""
    import socket

    arena = open_arena(store, rater=rater, seed=seed)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(arena), log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the arena server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        arena.book.close()
        sock.close()
