"""Broken inputs through the real ``ckptbench run`` (issue 8, item 3): every case gives one clear sentence that
names the file (or the spec field) and the fix, and the run goes on with the good work beside it.

The cases share a few runs to stay fast: one run holds every broken checkpoint beside a good one; one run
holds every broken case (LoRA, embedding, reference image) beside good cases; spec problems end before any
work (exit code 2, one line, nothing written); a full disk stops the run resumably. Each table row is its
own test, named after the case.
"""

from __future__ import annotations

import csv
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from ckptbench.cli import app
from tests.conftest import write_spec_text
from tests.test_crash_safety import _full_disk_after

# 64×64 px, 2 Euler steps, 1 seed: the cheapest run that still makes and scores real images.
GENERATION = 'sampler = "Euler"\nsteps = 2\nwidth = 64\nheight = 64\nseeds = [1]\nbatch_size = 4'


def _one_line(text: str) -> str:
    """Rich wraps console lines (at spaces, or inside a long path): compare texts without their whitespace."""
    return "".join(text.split())


def _invoke(spec: Path) -> Any:
    result = CliRunner().invoke(app, ["run", str(spec)])
    assert "Traceback" not in result.output, result.output
    return result


def _scorers(tiny_models: dict[str, Path], *extra: str) -> str:
    clip = tiny_models["clip"]
    use = ", ".join(f'"{name}"' for name in ("clip-score", *extra))
    options = "".join(f'[scorers.{name}]\nmodel = "{clip}"\n' for name in ("clip-score", *extra))
    return f"[scorers]\nuse = [{use}]\n{options}"


def _read_results(store: Path) -> dict[str, Any]:
    return json.loads((store / "results.json").read_text())


def _read_csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------------------------------------------
# Broken checkpoints, all in one run beside a good one


def _split(blob: bytes) -> tuple[bytes, bytes]:
    (length,) = struct.unpack("<Q", blob[:8])
    return blob[8 : 8 + length], blob[8 + length :]


def _truncated(blob: bytes, path: Path) -> None:
    path.write_bytes(blob[: len(blob) // 2])  # an interrupted download


def _header_longer_than_file(blob: bytes, path: Path) -> None:
    header, data = _split(blob)
    path.write_bytes(struct.pack("<Q", len(blob)) + header + data)


def _huge_header(blob: bytes, path: Path) -> None:
    header, data = _split(blob)
    path.write_bytes(struct.pack("<Q", 2**62) + header + data)


def _duplicate_names(blob: bytes, path: Path) -> None:
    header, data = _split(blob)
    first, second = [name for name in json.loads(header) if name != "__metadata__"][:2]
    # Same length in bytes is not needed: the length field is rewritten; the second name now repeats the first.
    duplicated = header.decode().replace(f'"{second}"', f'"{first}"', 1).encode()
    path.write_bytes(struct.pack("<Q", len(duplicated)) + duplicated + data)


@dataclass(frozen=True)
class BrokenCheckpoint:
    """A checkpoint file made from the good tiny SD1.5 file; ``make`` writes it (None: the good file itself)."""

    make: Callable[[bytes, Path], None] | None
    fault: str  # what the message says is wrong
    fix: str
    extra: str = ""  # more TOML keys of the checkpoint


CHECKPOINTS: dict[str, BrokenCheckpoint] = {
    "truncated-safetensors": BrokenCheckpoint(_truncated, "the file is truncated", "download it again"),
    "header-longer-than-file": BrokenCheckpoint(_header_longer_than_file, "but the file has only",
                                                "download it again"),
    "huge-header-length": BrokenCheckpoint(_huge_header, "over the 104,857,600-byte limit",
                                           "download it again from a trusted source"),
    "duplicate-tensor-names": BrokenCheckpoint(_duplicate_names, "twice", "download it again"),
    "sd15-file-declared-sdxl": BrokenCheckpoint(None, "arch = 'sdxl' in the spec, but", "fix or remove `arch`",
                                                extra='arch = "sdxl"'),
}


@pytest.fixture(scope="module")
def checkpoint_run(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("broken-checkpoints")
    good = tiny_models["single_a"]
    blob = good.read_bytes()
    blocks = [f'[[checkpoints]]\nname = "good"\npath = "{good}"\nconfig = "{tiny_models["config"]}"\n']
    files: dict[str, Path] = {}
    for name, case in CHECKPOINTS.items():
        files[name] = good if case.make is None else folder / f"{name}.safetensors"
        if case.make is not None:
            case.make(blob, files[name])
        blocks.append(f'[[checkpoints]]\nname = "{name}"\npath = "{files[name]}"\n{case.extra}\n')
    spec = folder / "spec.toml"
    spec.write_text(write_spec_text(tiny_models, checkpoints="\n".join(blocks), generation=GENERATION,
                                    suites='[[suites]]\nname = "q"\nprompts = ["a red cube"]',
                                    scorers=_scorers(tiny_models)))
    result = _invoke(spec)
    store = folder / "store"
    return {"result": result, "results": _read_results(store), "files": files,
            "report": (store / "report" / "index.html").read_text()}


def test_the_good_checkpoint_beside_the_broken_ones_is_made_and_scored(checkpoint_run) -> None:
    # The run is partial (exit code 3): the good checkpoint is complete, the broken ones made nothing.
    assert checkpoint_run["result"].exit_code == 3, checkpoint_run["result"].output
    results = checkpoint_run["results"]
    good = next(entry for entry in results["checkpoints"] if entry["name"] == "good")
    assert good["status"] == "ok" and good["images"] == {"planned": 1, "ok": 1, "failed": 0}
    assert good["scores"]["clip-score"]["n"] == 1
    assert results["run"]["status"] == "partial"
    assert sorted(f["checkpoint"] for f in results["failures"]) == sorted(CHECKPOINTS)
    assert f"recorded failures and warnings: {len(CHECKPOINTS)} checkpoint" in checkpoint_run["result"].output


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_a_broken_checkpoint_fails_alone_with_one_clear_message(name: str, checkpoint_run) -> None:
    case, results = CHECKPOINTS[name], checkpoint_run["results"]
    entry = next(entry for entry in results["checkpoints"] if entry["name"] == name)
    assert entry["status"] == "failed" and entry["images"]["ok"] == 0
    message = entry["error"]
    (failure,) = [f for f in results["failures"] if f["checkpoint"] == name]
    assert failure["scope"] == "checkpoint" and failure["message"] == message
    assert message.startswith(f"checkpoint '{name}': ") and str(checkpoint_run["files"][name]) in message, message
    assert case.fault in message and case.fix in message, message
    assert "\n" not in message and "Traceback" not in message
    assert _one_line(message) in _one_line(checkpoint_run["result"].output)  # said on the console too
    assert str(checkpoint_run["files"][name]) in checkpoint_run["report"]  # and listed in the report


# ---------------------------------------------------------------------------------------------------
# Broken cases (LoRA, embedding, reference images), all in one run beside good cases


def _sdxl_lora(path: Path) -> None:
    """An SDXL LoRA with real SDXL key names and widths: cross-attention keys read the 2048-wide text
    embedding, and it adapts the second text encoder (1280 wide) that SD1.5 does not have."""
    generator = torch.Generator().manual_seed(0)
    save_file({
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight":
            torch.randn(4, 2048, generator=generator),
        "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight":
            torch.randn(640, 4, generator=generator),
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight":
            torch.randn(4, 1280, generator=generator),
        "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight":
            torch.randn(1280, 4, generator=generator),
    }, str(path))


def _png(path: Path, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(48, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path.read_bytes()


@dataclass(frozen=True)
class BrokenCase:
    prompt: str  # of a case in suite 'q'; empty: a case of the style suite (id = the row's name)
    scope: str  # of its entry in results.json failures
    names: str  # key of the file (in the run's ``files``) the message must name
    fix: str
    marker: str  # text that tells its failure from the others'


CASES: dict[str, BrokenCase] = {
    "sdxl-lora-on-sd15": BrokenCase("a red cube <lora:xl_detail:0.7>", "image", "sdxl_lora",
                                    "use a LoRA made for the checkpoint's architecture", "was made for SDXL"),
    "missing-lora-name": BrokenCase("a red cube <lora:xl_detial>", "case", "lora_dirs",
                                    "put xl_detial.safetensors there, fix the name", "'xl_detial'"),
    # A1111 reads a word that names no embedding as plain words, and so does ckptbench (a missing embedding
    # cannot be told from any other word); a word that nearly names one is recorded as a warning.
    "embedding-near-miss": BrokenCase("a red cube, easy_negative", "warning", "embedding",
                                      "write 'EasyNegative' in the prompt to use the embedding", "easy_negative"),
    "unreadable-reference-image": BrokenCase("", "case", "cut_png", "replace it with a readable PNG", "cut.png"),
    "zero-byte-reference-image": BrokenCase("", "case", "zero_png", "replace it with the real image", "zero.png"),
}


@pytest.fixture(scope="module")
def case_run(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path]) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("broken-cases")
    loras, embeddings, references = folder / "loras", folder / "embeddings", folder / "references"
    for made in (loras, embeddings, references):
        made.mkdir()
    files = {"sdxl_lora": loras / "xl_detail.safetensors", "lora_dirs": loras,
             "embedding": embeddings / "EasyNegative.safetensors", "good_png": references / "good.png",
             "cut_png": references / "cut.png", "zero_png": references / "zero.png"}
    _sdxl_lora(files["sdxl_lora"])
    save_file({"emb_params": torch.randn(2, 32, generator=torch.Generator().manual_seed(1))}, str(files["embedding"]))
    _png(files["good_png"], 0)
    files["cut_png"].write_bytes(_png(files["cut_png"], 1)[:200])  # an interrupted copy
    files["zero_png"].write_bytes(b"")
    style_cases = {"good": "good.png", "unreadable-reference-image": "cut.png", "zero-byte-reference-image": "zero.png"}
    (folder / "styles.toml").write_text('[suite]\nname = "styles"\nkind = "style"\n' + "".join(
        f'[[cases]]\nid = "{case_id}"\nprompt = "a girl, {case_id}"\nreferences = ["references/{image}"]\n'
        for case_id, image in style_cases.items()))
    prompts = ["a red cube"] + [case.prompt for case in CASES.values() if case.prompt]
    spec = folder / "spec.toml"
    spec.write_text(write_spec_text(
        tiny_models, checkpoints=f'[[checkpoints]]\nname = "good"\npath = "{tiny_models["folder_b"]}"',
        generation=f'{GENERATION}\nlora_dirs = ["{loras}"]\nembedding_dirs = ["{embeddings}"]',
        suites=f'[[suites]]\nname = "q"\nprompts = {json.dumps(prompts)}\n[[suites]]\nfile = "styles.toml"',
        scorers=_scorers(tiny_models, "style-clip")))
    result = _invoke(spec)
    store = folder / "store"
    scores = _read_csv_rows(store / "scores.csv")
    return {"result": result, "results": _read_results(store), "files": files, "scores": scores,
            "report": (store / "report" / "index.html").read_text()}


def test_the_good_cases_beside_the_broken_ones_are_made_and_scored(case_run) -> None:
    assert case_run["result"].exit_code == 3, case_run["result"].output  # partial
    results = case_run["results"]
    (good,) = results["checkpoints"]
    # Planned: q's 'a red cube', its SDXL-LoRA and near-miss cases, the style suite's good case; the missing
    # LoRA and the two broken reference images skip their cases before any image is made.
    assert good["status"] == "partial" and good["images"] == {"planned": 4, "ok": 3, "failed": 1}
    assert results["run"]["status"] == "partial"
    made = {(row["suite"], row["prompt"]) for row in case_run["scores"]}
    assert made == {("q", "a red cube"), ("q", "a red cube, easy_negative"), ("styles", "a girl, good")}
    style = [row for row in case_run["scores"] if row["scorer"] == "style-clip" and row["suite"] == "styles"]
    assert len(style) == 1 and np.isfinite(float(style[0]["value"]))  # the good reference set still scores
    assert len(results["failures"]) == len(CASES)
    assert "recorded failures and warnings: 3 case, 1 image, 1 warning" in case_run["result"].output


@pytest.mark.parametrize("name", list(CASES))
def test_a_broken_case_fails_alone_with_one_clear_message(name: str, case_run) -> None:
    case = CASES[name]
    (failure,) = [f for f in case_run["results"]["failures"] if case.marker in f["message"]]
    message = failure["message"]
    assert failure["scope"] == case.scope
    if case.scope == "case":  # skipped before any image was made, for every checkpoint
        suite_and_id = "styles/" + name if not case.prompt else "q/"
        assert message.startswith(f"case {suite_and_id}") and failure["checkpoint"] is None, message
    elif case.scope == "image":
        assert failure["checkpoint"] == "good" and failure["image_key"], failure
    assert str(case_run["files"][case.names]) in message and case.fix in message, message
    assert "\n" not in message and "Traceback" not in message
    assert _one_line(message) in _one_line(case_run["result"].output)
    assert str(case_run["files"][case.names]) in case_run["report"]


# ---------------------------------------------------------------------------------------------------
# Problems of the spec and its suites: found before any work, exit code 2, one line, no store written


@dataclass(frozen=True)
class BrokenSpec:
    sections: dict[str, str]  # write_spec_text sections that replace the defaults
    names: str  # what the message names: 'spec' (the spec file), or a file written beside it
    says: str  # the field or fault, as the message words it
    fix: str
    files: tuple[tuple[str, str], ...] = ()  # (name, text) written beside the spec first


SPECS: dict[str, BrokenSpec] = {
    "unknown-spec-key": BrokenSpec({"generation": f'{GENERATION}\nsampler_name = "Euler"'}, "spec",
                                   "unknown key 'generation.sampler_name' — did you mean 'sampler'?",
                                   "remove or rename it"),
    "wrong-spec-type": BrokenSpec({"generation": GENERATION.replace("steps = 2", 'steps = "twenty"')}, "spec",
                                  "generation.steps should be a valid integer", "fix this value"),
    "empty-inline-suite": BrokenSpec({"suites": '[[suites]]\nname = "empty"\nprompts = []'}, "spec",
                                     "suites[0].prompts is empty", "put at least 1 entry in it"),
    "suite-file-without-cases": BrokenSpec({"suites": '[[suites]]\nfile = "empty.toml"'}, "empty.toml",
                                           "missing required key 'cases'", "add it",
                                           files=(("empty.toml", '[suite]\nname = "empty"\n'),)),
    "empty-ghostreview-csv": BrokenSpec(
        {"suites": '[[suites]]\nformat = "ghostreview-prompts"\npath = "prompts.csv"'}, "prompts.csv",
        "suite 'ghostreview-prompts'", "has no cases; add prompts to it or remove the suite from the spec",
        files=(("prompts.csv", "index,Prompts\n"),)),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_a_broken_spec_ends_before_the_run_with_one_line(name: str, tmp_path: Path, tiny_models) -> None:
    case = SPECS[name]
    for file_name, text in case.files:
        (tmp_path / file_name).write_text(text)
    spec = tmp_path / "spec.toml"
    spec.write_text(write_spec_text(tiny_models, **{"generation": GENERATION, **case.sections}))
    result = _invoke(spec)
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()  # the error is printed unwrapped: one line
    named = spec if case.names == "spec" else tmp_path / case.names
    assert line.startswith("error: ") and str(named) in line, line
    assert case.says in line and case.fix in line, line
    assert "more problem" not in line  # one problem, said once (not again as its follow-on errors)
    assert not (tmp_path / "store").exists()  # nothing ran, nothing was written


# ---------------------------------------------------------------------------------------------------
# A full disk while writing: the run stops cleanly and resumes (tests/test_crash_safety.py checks the
# store in depth after full disks at several points; this row gives the user's view of it)


def test_disk_full_while_writing_stops_with_the_fix_and_resumes(tmp_path: Path, tiny_models,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the file being synced")
    spec = tmp_path / "spec.toml"
    spec.write_text(write_spec_text(
        tiny_models, checkpoints=f'[[checkpoints]]\nname = "good"\npath = "{tiny_models["folder_b"]}"',
        generation=GENERATION, suites='[[suites]]\nname = "q"\nprompts = ["a red cube"]',
        scorers=_scorers(tiny_models)))
    _full_disk_after(0, monkeypatch, ".png.")
    result = _invoke(spec)
    monkeypatch.undo()
    assert result.exit_code == 2, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert str(tmp_path / "store") in line and "no space left on the device while writing it" in line, line
    assert "Free space on that disk (or use another --store) and run the same command again" in line, line
    resumed = _invoke(spec)
    assert resumed.exit_code == 0, resumed.output
    (good,) = _read_results(tmp_path / "store")["checkpoints"]
    assert good["images"] == {"planned": 1, "ok": 1, "failed": 0}
