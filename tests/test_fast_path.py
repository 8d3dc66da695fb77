"""The GPU fast path's choices (testable on a CPU), batch planning and shards, and their provenance."""

from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console

from ckptbench.errors import SpecError
from ckptbench.executors.base import GeneratorOptions, auto_shard_images, generation_tasks
from ckptbench.generate.batching import plan_batches
from ckptbench.generate.fast_path import (
    CPU_AUTO_BATCH,
    apply_fast_path,
    choose_batch_size,
    estimated_bytes_per_image,
)
from ckptbench.generate.loading import load_pipeline
from ckptbench.runner import run_benchmark
from ckptbench.spec_load import load_spec


def test_batch_size_auto_is_a_fixed_default_on_cpu_and_numbers_pass_through() -> None:
    cpu = torch.device("cpu")
    assert choose_batch_size("auto", cpu, "sd15", 512, 512, torch.float32) == CPU_AUTO_BATCH == 4
    assert choose_batch_size(7, cpu, "sdxl", 1024, 1024, torch.float16) == 7


def test_memory_estimate_scales_with_pixels_and_dtype_width() -> None:
    assert estimated_bytes_per_image("sd15", 512, 512, torch.float16) == pytest.approx(0.9e9)
    # 4× the pixels, twice the bytes per value.
    assert estimated_bytes_per_image("sd15", 1024, 1024, torch.float32) == pytest.approx(0.9e9 * 4 * 2)
    assert estimated_bytes_per_image("sdxl", 1024, 1024, torch.bfloat16) == pytest.approx(1.4e9 * 4)


def test_tiny_pipeline_runs_sdpa_attention_and_keeps_its_layout_on_cpu(tiny_checkpoint) -> None:
    pipeline = load_pipeline(tiny_checkpoint, torch.device("cpu"), torch.float32)
    chosen = apply_fast_path(pipeline, torch.device("cpu"), compile_unet=False)
    assert chosen == {"attention": ["AttnProcessor2_0"], "channels_last": False, "compiled": False,
                      "weights_dtype": "float32"}
    weight = next(p for p in pipeline.unet.parameters() if p.ndim == 4)
    assert weight.is_contiguous()  # not switched to channels_last off CUDA


def test_batches_and_shards_cut_groups_alike(make_job) -> None:
    jobs = [make_job(seed=seed) for seed in range(5)] + [make_job(negative_prompt="blurry", seed=s) for s in (7, 8)]
    batches = plan_batches(jobs, 2)
    assert [[job.seed for job in batch] for batch in batches] == [[0, 1], [2, 3], [4], [7, 8]]
    tasks = generation_tasks(object(), jobs, GeneratorOptions("cpu", 2), shard_images=3)  # type: ignore[arg-type]
    # 3 images round up to 2 whole batches per shard; every shard re-batches to the same batches.
    assert [[job.seed for job in task.jobs] for task in tasks] == [[0, 1, 2, 3], [4, 7, 8]]
    assert [(task.shard, task.shards) for task in tasks] == [(0, 2), (1, 2)]
    rebatched = [[job.seed for job in batch] for task in tasks for batch in plan_batches(task.jobs, 2)]
    assert rebatched == [[0, 1], [2, 3], [4], [7, 8]]


def test_auto_shards_keep_every_worker_busy() -> None:
    assert auto_shard_images([100], workers=4) == 25
    assert auto_shard_images([100, 100, 100, 100], workers=2) == 64  # enough checkpoints; capped
    assert auto_shard_images([0, 0], workers=2) == 0


def test_run_records_the_chosen_batch_and_fast_path(write_spec) -> None:
    generation = 'sampler = "Euler"\nsteps = 2\nwidth = 64\nheight = 64\nseeds = [1]\nbatch_size = "auto"'
    outcome = run_benchmark(load_spec(write_spec(generation=generation)), console=Console(quiet=True))
    runtime = json.loads(outcome.results_path.read_text())["provenance"]["generation_runtime"]
    for name in ("a", "b"):
        assert runtime[name]["batch_size"] == 4 and runtime[name]["attention"] == ["AttnProcessor2_0"]
        assert runtime[name]["channels_last"] is False and runtime[name]["compiled"] is False
        assert runtime[name]["vae_decode"] == "float32" and "thread" in runtime[name]["devices"][0]


def test_batch_size_must_be_a_number_or_auto(write_spec) -> None:
    with pytest.raises(SpecError, match="batch_size"):
        load_spec(write_spec(generation='batch_size = "big"'))
