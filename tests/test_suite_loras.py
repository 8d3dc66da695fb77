"""LoRA suite rules: which LoRAs a case applies, and how names, aliases, mappings and hashes find files."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, PngImagePlugin
from safetensors.torch import save_file

from ckptbench.analysis.analyze import analyze
from ckptbench.analysis.suite import AnalysisSettings
from ckptbench.generate.lora import LoraError, LoraLibrary
from ckptbench.prompt import LoraTag
from ckptbench.suites.case import Case
from ckptbench.suites.infotext_suite import cases_from_images
from ckptbench.suites.loras import parse_hash, resolve_case_loras
from ckptbench.suites.notm import CheckpointIdentity, notm_exclusions


def _lora(path: Path, seed: int, alias: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    tensors = {"lora_unet_x.lora_down.weight": torch.randn(2, 4, generator=generator),
               "lora_unet_x.lora_up.weight": torch.randn(4, 2, generator=generator)}
    save_file(tensors, str(path), metadata={"ss_output_name": alias} if alias else None)
    return path


@pytest.fixture
def library(tmp_path: Path) -> LoraLibrary:
    _lora(tmp_path / "loras" / "Colorwater_v4.safetensors", 1, alias="try2")
    _lora(tmp_path / "loras" / "sub" / "3DMM_V12.safetensors", 2)
    _lora(tmp_path / "loras" / "MoXinV1.safetensors", 3)
    return LoraLibrary((tmp_path / "loras",), default_weight=0.8)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _names(uses) -> list[tuple[str, float]]:  # type: ignore[no-untyped-def]
    return sorted((use.path.stem, use.weight) for use in uses)


def test_prompt_tags_complete_the_suite_list_once(library: LoraLibrary) -> None:
    case = Case("l", "0", "a girl, <lora:3DMM_V12:0.6>", loras=(LoraTag("3DMM_V12"), LoraTag("MoXinV1")))
    # 3DMM_V12 is in both: applied once at the prompt's weight; MoXinV1 completes the list at the default 0.8.
    assert _names(resolve_case_loras(case, library)) == [("3DMM_V12", 0.6), ("MoXinV1", 0.8)]
    untagged = Case("l", "1", "a girl, <lora:MoXinV1>")
    assert _names(resolve_case_loras(untagged, library)) == [("MoXinV1", 0.8)]


def test_resolution_by_alias_mapping_and_hash(library: LoraLibrary, tmp_path: Path) -> None:
    colorwater = tmp_path / "loras" / "Colorwater_v4.safetensors"
    # A1111's alias: the file's ss_output_name
    assert _names(resolve_case_loras(Case("l", "0", "<lora:try2:0.8>"), library)) == [("Colorwater_v4", 0.8)]
    # an explicit mapping in the suite, by file name
    mapped = Case("l", "0", "<lora:shuimobysimV3:0.7>", lora_files=(("shuimobysimV3", "MoXinV1.safetensors"),))
    assert _names(resolve_case_loras(mapped, library)) == [("MoXinV1", 0.7)]
    # by Civitai AutoV2 (first 10 hex of the file's sha256), in a mapping and as the name itself
    autov2 = _sha(colorwater)[:10]
    by_autov2 = Case("l", "0", "<lora:cw:0.5>", lora_files=(("cw", f"autov2:{autov2.upper()}"),))
    assert _names(resolve_case_loras(by_autov2, library)) == [("Colorwater_v4", 0.5)]
    assert _names(resolve_case_loras(Case("l", "0", f"<lora:{autov2}:0.4>"), library)) == [("Colorwater_v4", 0.4)]
    # by A1111's "Lora hashes" value: sha256 of the bytes after the safetensors header (computed here by hand)
    data = colorwater.read_bytes()
    (header_length,) = struct.unpack("<Q", data[:8])
    autov3 = hashlib.sha256(data[8 + header_length:]).hexdigest()[:12]
    by_autov3 = Case("l", "0", "<lora:winter:1>", lora_files=(("winter", f"autov3:{autov3}"),))
    assert _names(resolve_case_loras(by_autov3, library)) == [("Colorwater_v4", 1.0)]
    # the same file reached under two names is one LoRA
    twice = Case("l", "0", "<lora:try2:0.5>", loras=(LoraTag("Colorwater_v4"),))
    assert _names(resolve_case_loras(twice, library)) == [("Colorwater_v4", 0.5)]


def test_infotext_lora_hashes_resolve_by_either_kind(library: LoraLibrary, tmp_path: Path) -> None:
    """``Lora hashes`` as A1111 writes it (addnet, or the file's sshs_model_hash) and as earlier ckptbench
    versions and some tools wrote it (12 hex of the whole file's sha256): all three find the file."""
    stated = tmp_path / "loras" / "stated.safetensors"
    save_file({"lora_unet_y.lora_down.weight": torch.ones(2, 4), "lora_unet_y.lora_up.weight": torch.ones(4, 2)},
              str(stated), metadata={"sshs_model_hash": "feedbeef0123" + "0" * 52})
    moxin = tmp_path / "loras" / "MoXinV1.safetensors"
    data = moxin.read_bytes()
    addnet = hashlib.sha256(data[8 + struct.unpack("<Q", data[:8])[0]:]).hexdigest()[:12]
    text = f'a <lora:m:0.5> <lora:s:1> <lora:w:0.3>\nSteps: 4, Seed: 1, Lora hashes: "m: {addnet}, s: feedbeef0123, ' \
           f'w: {_sha(moxin)[:12]}"'
    image = tmp_path / "shown.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", text)
    Image.new("RGB", (8, 8)).save(image, pnginfo=info)
    (case,), _ = cases_from_images(image, "imported")
    assert _names(resolve_case_loras(case, library)) == [("MoXinV1", 0.8), ("stated", 1.0)]


def test_unresolvable_loras_say_how_to_map_them(library: LoraLibrary) -> None:
    with pytest.raises(LoraError, match="lora_files"):
        resolve_case_loras(Case("l", "0", "<lora:shuV2:0.8>"), library)
    with pytest.raises(LoraError, match=r"no file in lora_dirs .* has that hash"):
        resolve_case_loras(Case("l", "0", "<lora:x>", lora_files=(("x", "autov2:ffffffffff"),)), library)
    with pytest.raises(LoraError, match="not a autov2 hash"):
        parse_hash("autov2:123")
    assert parse_hash("0123456789AB") == ("autov3", "0123456789ab") and parse_hash("not-a-hash") is None


def test_notm_matches_by_name_file_and_hash() -> None:
    sha = "4199bcdd14" + "0" * 54
    checkpoints = [CheckpointIdentity("rev", "/models/revAnimated_v122.safetensors", sha),
                   CheckpointIdentity("majicmixRealistic_v6.safetensors", "ghostreview:majicmixRealistic_v6"),
                   CheckpointIdentity("other", "hub:org/other", "a" * 64)]
    showcase = [("revAnimated_v122.safetensors",), ("4199BCDD14",), ("majicmixRealistic_v6",), ("NovelAI",), ()]
    excluded = notm_exclusions(checkpoints, showcase)
    assert excluded.tolist() == [[True, True, False, False, False],
                                 [False, False, True, False, False],
                                 [False, False, False, False, False]]


def test_notm_analysis_on_a_lora_suite() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for checkpoint in ("a", "b"):
        for case in ("0", "1", "2"):
            for seed in (1, 2, 3):
                rows.append((checkpoint, "lora", case, "", seed, "style-gram", float(rng.normal())))
    frame = pd.DataFrame(rows, columns=["checkpoint", "suite", "case_id", "prompt", "seed", "scorer", "value"])
    cases = {("lora", "0"): {"kind": "lora", "label": "L0", "showcase_models": ["a.safetensors"]},
             ("lora", "1"): {"kind": "lora", "label": "L1", "showcase_models": []},
             ("lora", "2"): {"kind": "lora", "label": "L2", "showcase_models": ["b"]}}
    result = analyze(frame, AnalysisSettings(resamples=100), checkpoints=[CheckpointIdentity("a"),
                                                                          CheckpointIdentity("b")], cases=cases)
    lora = result["suites"]["lora"]
    notm = lora["notm"]
    assert notm["excluded"] == {"a": ["0"], "b": ["2"]} and notm["cases_without_showcase_model"] == ["1"]
    summary = notm["scorers"]["style-gram"]["summary"]
    values_a = frame[(frame.checkpoint == "a") & (frame.case_id != "0")]["value"]
    assert summary["a"]["mean"] == pytest.approx(values_a.mean()) and summary["a"]["excluded"] == 3
    assert not lora["scorers"]["style-gram"]["higher_is_better"]  # a loss, by the traits' fallback
    assert lora["matrices"]["style-gram"]["columns"] == ["0", "1", "2"] and lora["case_labels"]["0"] == "L0"
    pair = notm["scorers"]["style-gram"]["pairs"][0]
    # only case 1 is shared: a's images of case 0 and b's of case 2 are left out of this pair
    assert pair["n_cells"] == 3 and pair["excluded_cells"] == 6
