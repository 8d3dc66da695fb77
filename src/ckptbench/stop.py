"""Stopping a run cleanly: Ctrl-C finishes the batch in progress, saves it, and ends the run resumably.

The runner's loops check a ``StopFlag`` at batch boundaries (generation batches, scoring chunks, set
jobs); nothing is cut off mid-batch, so every image and score that was computed is kept. A second
Ctrl-C stops at once (``KeyboardInterrupt``): the store stays consistent either way, because every file
is written atomically and every store update is a transaction.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

INTERRUPTED_EXIT_CODE = 130  # what shells report for a program ended by SIGINT (128 + 2)


class StopFlag:
    """Set once a stop is asked for; loops check ``requested`` between batches."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def request(self, reason: str = "stop requested") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()


def stop_requested(stop: StopFlag | None) -> bool:
    return stop is not None and stop.requested


@contextmanager
def stop_on_interrupt(stop: StopFlag) -> Iterator[StopFlag]:
    """While inside, the first SIGINT sets ``stop``; a second raises ``KeyboardInterrupt`` as usual.

    Signal handlers can only be installed from the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.request("interrupted (Ctrl-C)")

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
