"""Faults injected into Ray workers only, for tests/test_executors.py.

Ray runs ``install`` in every worker process it starts (``worker_process_setup_hook``), never in the driver,
so the driver plans and writes exactly as in a real run while the workers meet the fault where a real one
would strike: in the checkpoint loader the generator calls. Environment variables choose the checkpoints:

* ``CKPTBENCH_FAULT_RAISE=<name>``: loading that checkpoint raises every time (Ray retries, then gives up);
* ``CKPTBENCH_FAULT_CRASH_ONCE=<name>``: the first worker that loads it dies on the spot (a lost task).

Each attempt leaves a file in ``CKPTBENCH_FAULT_DIR``, so the test can count them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def install() -> None:
    if "CKPTBENCH_FAULT_DIR" not in os.environ:
        return
    from ckptbench.generate import diffusers_backend

    real_load = diffusers_backend.load_pipeline
    folder = Path(os.environ["CKPTBENCH_FAULT_DIR"])

    def load_with_faults(checkpoint, device, dtype):  # type: ignore[no-untyped-def]
        (folder / f"attempt-{checkpoint.name}-{os.getpid()}-{time.time_ns()}").touch()
        if checkpoint.name == os.environ.get("CKPTBENCH_FAULT_RAISE"):
            raise RuntimeError(f"injected fault: this worker cannot load '{checkpoint.name}'")
        if checkpoint.name == os.environ.get("CKPTBENCH_FAULT_CRASH_ONCE"):
            marker = folder / "crashed"
            if not marker.exists():
                marker.touch()
                os._exit(1)  # the worker process dies mid-task, as on an out-of-memory kill
        return real_load(checkpoint, device, dtype)

    diffusers_backend.load_pipeline = load_with_faults
