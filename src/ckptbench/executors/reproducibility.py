"""What makes the same image key give the same bytes wherever the work runs, and what a run can promise.

An image key names the inputs (checkpoint, case, seed, sampler settings, dtype, backend version), not the
kernels that compute them. On a CPU the kernels' results depend on three more things: the intra-op thread
count (oneDNN and BLAS split reductions by thread), the batch an image was made in, and the dtype. Batches
and dtype are already fixed by the plan; the thread count is fixed here: every task of a run, in this
process or in a Ray worker, runs with the driver's intra-op thread count (``torch.get_num_threads()`` when
the executor opens; set ``OMP_NUM_THREADS`` to choose it), and Ray tasks on CPUs ask for that many CPUs. The
local and Ray executors then write byte-identical PNGs on one machine (``tests/test_executor_bytes.py``).

On a GPU there is no such promise, and provenance says so (``reproducibility``).
"""

from __future__ import annotations

from typing import Any

import torch

CPU_PROMISE = ("byte-identical PNGs for the same image key under the local and Ray executors on machines with the "
               "same CPU and software: every task runs with the same intra-op thread count, the same batches and "
               "the same dtype")
GPU_PROMISE = ("not bit-reproducible in general: the same image key can differ in the last bits between GPU models, "
               "drivers, CUDA/cuDNN/torch versions, batch compositions (batch_size 'auto' follows free GPU memory) "
               "and with torch.compile; deterministic algorithms are not enforced, so cuBLAS/cuDNN may choose "
               "different kernels between runs. Equal on one GPU with the same software, batch size and "
               "settings in practice, but not guaranteed; scores agree to within their noise, not to the bit")


def driver_threads() -> int:
    """The intra-op thread count every CPU task of a run uses: this process's."""
    return torch.get_num_threads()


def use_threads(threads: int) -> None:
    """Run this process's torch work with ``threads`` intra-op threads (a Ray worker, before a task)."""
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def reproducibility(device_type: str, threads: int) -> dict[str, Any]:
    """The provenance record: what the run's images are reproducible under."""
    if device_type != "cuda":
        return {"device": device_type, "intra_op_threads": threads, "bit_identical": True, "promise": CPU_PROMISE}
    return {"device": device_type, "bit_identical": False, "promise": GPU_PROMISE,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
            "tf32_cudnn": bool(torch.backends.cudnn.allow_tf32)}
