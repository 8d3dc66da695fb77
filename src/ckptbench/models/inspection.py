"""``ckptbench inspect``: what a model file is, what it holds, and whether ckptbench would load it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from ckptbench.errors import ModelFileError
from ckptbench.hashing import autov2, relative_files, sha256_file
from ckptbench.lycoris.keys import describe as describe_network
from ckptbench.models.checkpoint import (
    FOLDER_FILES,
    bundled_config,
    decide_prediction,
    decide_zero_terminal_snr,
    folder_digest,
    folder_family,
    folder_zero_terminal_snr,
)
from ckptbench.models.detect import NON_WEIGHT_KEYS, detect
from ckptbench.models.families import all_families
from ckptbench.models.safety import UnsafeModelFileError, read_safetensors_header
from ckptbench.models.state_dict import ModelFile, open_model_file


def _component_prefixes(family: str | None) -> dict[str, str]:
    """Original-layout key prefix → diffusers component: the family's, or every family's when unknown (longest
    prefix first)."""
    families = [f for f in all_families() if f.name == family] or list(all_families())
    prefixes = {prefix: name for f in reversed(families) for prefix, name in f.components.items()}
    return dict(sorted(prefixes.items(), key=lambda item: -len(item[0])))


def inspect_path(path: Path, allow_pickle: bool = False) -> dict[str, Any]:
    """A JSON-able report; ``safe`` is False (with ``error``) when ckptbench refuses the file."""
    path = Path(path)
    report: dict[str, Any] = {
        "path": str(path), "format": None, "kind": None, "arch": None, "variant": None, "prediction": None,
        "prediction_source": None, "zero_terminal_snr": None, "zero_terminal_snr_source": None, "dtype": None,
        "parameters": None, "components": {}, "sha256": None,
        "autov2": None, "size_bytes": None, "metadata": {}, "safe": False, "safety": None, "error": None,
        "evidence": [], "warnings": [], "notes": [], "problem": None,
    }
    if path.is_dir():
        return _inspect_folder(path, report)
    if not path.is_file():
        raise ModelFileError(f"{path} does not exist; give a model file or a diffusers folder.")
    # Hashing reads raw bytes and runs nothing, so even a refused file gets its hashes (to look it up).
    report["sha256"] = sha256_file(path)
    report["autov2"] = autov2(report["sha256"])
    report["size_bytes"] = path.stat().st_size
    try:
        model = open_model_file(path, allow_pickle)
    except UnsafeModelFileError as error:
        report.update(format="pickle", safety="refused: could run code when loaded", error=str(error))
        return report
    except ModelFileError as error:
        report.update(safety="refused: invalid file", error=str(error))
        return report
    report["format"] = model.format
    report["safe"] = True
    report["safety"] = (f"safetensors header checked: {len(model.tensors)} tensors, known dtypes, byte ranges "
                        "consistent, contiguous and inside the file" if model.format == "safetensors" else
                        "pickle read with torch.load(weights_only=True): plain tensors only, no code run")
    report["metadata"] = _metadata(model.metadata)
    found = detect(model)
    _describe_tensors(model, report, found.family)
    report.update(kind=found.kind, arch=found.family, variant=found.variant, evidence=list(found.evidence),
                  warnings=list(found.warnings),
                  notes=list(found.notes), problem=found.problem, prediction=found.prediction,
                  prediction_source=found.prediction_source)
    if found.kind == "lora":  # which network (LoRA, LoCon, LoHa, LoKr), module counts, Tucker and DoRA parts
        report["network"] = describe_network({name: info.shape for name, info in model.tensors.items()})
    if found.kind == "checkpoint" and found.family is not None:
        ztsnr, ztsnr_source = decide_zero_terminal_snr(found.zero_terminal_snr, found.zero_terminal_snr_source,
                                                       found.family, None, [])
        report.update(zero_terminal_snr=ztsnr, zero_terminal_snr_source=ztsnr_source)
    if found.kind == "checkpoint" and found.family is not None and found.problem is None:
        try:
            prediction, source = decide_prediction(model, found, found.family)
        except ModelFileError as error:
            report["warnings"].append(str(error))
        else:
            report.update(prediction=prediction, prediction_source=source,
                          config=f"bundled:{bundled_config(found.family, prediction, found.variant).name}")
    return report


def _describe_tensors(model: ModelFile, report: dict[str, Any], family: str | None) -> None:
    weights = {name: info for name, info in model.tensors.items()
               if not name.startswith("model_ema.") and name not in NON_WEIGHT_KEYS}
    by_bytes: Counter[str] = Counter()
    components: Counter[str] = Counter()
    prefixes = _component_prefixes(family)
    # A transformer-only file (Flux, SD3.5 releases) holds the transformer's tensors without a prefix.
    bare = "transformer" if family is not None and not any(name.startswith(tuple(prefixes)) for name in weights) \
        else "other"
    for name, info in weights.items():
        count = 1
        for size in info.shape:
            count *= size
        by_bytes[info.dtype] += count
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        components[prefixes[prefix] if prefix else bare] += count
    report["dtype"] = by_bytes.most_common(1)[0][0] if by_bytes else None
    report["dtypes"] = dict(by_bytes)
    report["parameters"] = sum(by_bytes.values())
    report["tensors"] = len(model.tensors)
    if report["parameters"] and set(components) != {"other"}:
        report["components"] = dict(components)


def _metadata(raw: dict[str, str]) -> dict[str, Any]:
    """``__metadata__`` as stored; JSON-valued fields (kohya writes several) decoded."""
    out: dict[str, Any] = {}
    for key, value in sorted(raw.items()):
        if value[:1] in "{[":
            try:
                out[key] = json.loads(value)
                continue
            except json.JSONDecodeError:
                pass
        out[key] = value
    return out


def _inspect_folder(path: Path, report: dict[str, Any]) -> dict[str, Any]:
    if not (path / "model_index.json").is_file():
        raise ModelFileError(f"{path}: a folder without model_index.json is not a diffusers pipeline; give a model "
                             "file or a pipeline folder.")
    files = relative_files(path, FOLDER_FILES)
    report["sha256"] = folder_digest(path, files)
    report["autov2"] = autov2(report["sha256"])
    report["size_bytes"] = sum(f.stat().st_size for f in files)
    report.update(format="diffusers-folder", kind="checkpoint")
    try:
        headers = [read_safetensors_header(f) for f in files if f.suffix == ".safetensors"]
        family, prediction, evidence = folder_family(path, str(path))
    except ModelFileError as error:
        report.update(safety="refused: invalid file", error=str(error))
        return report
    ztsnr = folder_zero_terminal_snr(path)
    report.update(zero_terminal_snr=bool(ztsnr), zero_terminal_snr_source="the folder's scheduler_config.json")
    report.update(arch=family, prediction=prediction, prediction_source="the folder's scheduler_config.json",
                  evidence=evidence, safe=True, safety=f"{len(headers)} safetensors headers checked; only .safetensors "
                  "weights are loaded")
    if any(f.suffix == ".bin" for f in files):
        report["notes"].append("the folder also holds pickle (.bin) weights; ckptbench never loads them")
    report["parameters"] = sum(entry.numel for header in headers for entry in header.tensors.values())
    return report
