"""Loading a spec file: parse, apply its preset, validate, resolve relative paths against the file's folder
and check that every named file exists, so a loaded ``BenchmarkSpec`` is self-contained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ckptbench.errors import SpecError
from ckptbench.presets import apply_preset
from ckptbench.spec import (
    LATENT_UPSCALERS,
    PIXEL_UPSCALERS,
    BenchmarkSpec,
    GenerationSettings,
    ScorerOptions,
    ScorersSpec,
)
from ckptbench.spec_errors import describe_validation_error
from ckptbench.textfiles import read_toml


def load_spec(path: Path | str) -> BenchmarkSpec:
    """Read, validate and resolve a spec file; raise ``SpecError`` with one clear sentence otherwise."""
    path = Path(path)
    return spec_from_dict(read_toml(path, SpecError, "spec"), path)


class _ScorersOnly(BaseModel):
    """A spec file read for its ``[scorers]`` section alone (``ckptbench score``); other sections are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    scorers: ScorersSpec


def load_scorers_spec(path: Path | str) -> ScorersSpec:
    """The validated ``[scorers]`` section of a spec file, its local paths resolved against the file's folder."""
    path = Path(path)
    raw = read_toml(path, SpecError, "spec")
    try:
        scorers = _ScorersOnly.model_validate(raw).scorers
    except ValidationError as error:
        raise SpecError(describe_validation_error(error, path, BenchmarkSpec)) from None
    base = path.resolve().parent
    return scorers.model_copy(update={"options": {name: _resolve_options(opts, base)
                                                  for name, opts in scorers.options.items()}})


def spec_from_dict(raw: dict[str, Any], path: Path) -> BenchmarkSpec:
    """Validate a parsed spec; relative paths are taken relative to ``path``'s folder."""
    raw = apply_preset(raw, path)
    try:
        spec = BenchmarkSpec.model_validate({**raw, "spec_path": path.resolve()})
    except ValidationError as error:
        raise SpecError(describe_validation_error(error, path, BenchmarkSpec)) from None
    spec = _resolve_paths(spec, path.resolve().parent)
    _check_files_exist(spec, path)
    return spec


def _resolve_paths(spec: BenchmarkSpec, base: Path) -> BenchmarkSpec:
    def resolve(value: Path | None) -> Path | None:
        return None if value is None else (base / value.expanduser()).resolve()

    checkpoints = tuple(
        c.model_copy(update={"path": resolve(c.path), "config": resolve(c.config), "vae": resolve(c.vae),
                             "t5_tokenizer": resolve(c.t5_tokenizer),
                             "text_encoders": tuple(resolve(t) for t in c.text_encoders)})
        for c in spec.checkpoints
    )
    info = spec.benchmark.model_copy(update={"store": resolve(spec.benchmark.store) or base})
    generation = _resolve_generation_paths(spec.generation, base)
    options = {name: _resolve_options(opts, base) for name, opts in spec.scorers.options.items()}
    scorers = spec.scorers.model_copy(update={"options": options})
    suites = tuple(
        suite.model_copy(update={field: resolve(getattr(suite, field))
                                 for field in ("file", "path", "references", "showcase_models")})
        for suite in spec.suites
    )
    return spec.model_copy(update={"checkpoints": checkpoints, "benchmark": info, "scorers": scorers,
                                   "generation": generation, "suites": suites})


def _resolve_generation_paths(generation: GenerationSettings, base: Path) -> GenerationSettings:
    update: dict[str, Any] = {
        "lora_dirs": tuple((base / d.expanduser()).resolve() for d in generation.lora_dirs),
        "embedding_dirs": tuple((base / d.expanduser()).resolve() for d in generation.embedding_dirs),
    }
    if generation.vae is not None:
        update["vae"] = (base / generation.vae.expanduser()).resolve()
    hires = generation.hires
    if hires is not None and hires.upscaler_is_file:
        upscaler = str((base / Path(hires.upscaler).expanduser()).resolve())
        update["hires"] = hires.model_copy(update={"upscaler": upscaler})
    return generation.model_copy(update=update)


def _resolve_options(options: ScorerOptions, base: Path) -> ScorerOptions:
    return options.model_copy(update={"head": _resolve_if_local(options.head, base),
                                      "model": _resolve_if_local(options.model, base),
                                      "references": _resolve_if_local(options.references, base, always=True)})


def _resolve_if_local(value: str | None, base: Path, always: bool = False) -> str | None:
    """A scorer source is a hub id ('org/name') unless it looks like, or exists as, a local path."""
    if value is None:
        return None
    if value.startswith("hf:"):  # a file in a hub repo: hf:org/repo/path
        return value
    candidate = (base / Path(value).expanduser())
    looks_local = always or value.startswith((".", "/", "~")) or candidate.exists() or value.endswith(
        (".pth", ".pt", ".safetensors"))
    return str(candidate.resolve()) if looks_local else value


def _check_files_exist(spec: BenchmarkSpec, path: Path) -> None:
    if spec.generation.vae is not None and not spec.generation.vae.exists():
        raise SpecError(f"{path}: generation.vae: {spec.generation.vae} does not exist; fix the path (relative "
                        "paths are taken from the spec's folder).")
    for index, checkpoint in enumerate(spec.checkpoints):
        for field, value in [(f, getattr(checkpoint, f)) for f in ("path", "config", "vae", "t5_tokenizer")] + [
                (f"text_encoders[{i}]", p) for i, p in enumerate(checkpoint.text_encoders)]:
            if value is not None and not value.exists():
                raise SpecError(
                    f"{path}: checkpoints[{index}].{field} ('{checkpoint.name}'): {value} does not exist; "
                    "fix the path (relative paths are taken from the spec's folder)."
                )
    for index, suite in enumerate(spec.suites):
        for field in ("file", "path", "references", "showcase_models"):
            value = getattr(suite, field)
            if value is not None and not value.exists():
                raise SpecError(
                    f"{path}: suites[{index}].{field} ('{suite.name}'): {value} does not exist; "
                    "fix the path (relative paths are taken from the spec's folder)."
                )
    for index, folder in enumerate(spec.generation.lora_dirs):
        if not folder.is_dir():
            raise SpecError(f"{path}: generation.lora_dirs[{index}]: {folder} is not a folder; fix the path "
                            "(relative paths are taken from the spec's folder).")
    hires = spec.generation.hires
    if hires is not None and hires.upscaler_is_file and not Path(hires.upscaler).is_file():
        raise SpecError(
            f"{path}: generation.hires.upscaler: {hires.upscaler} is neither a known upscaler "
            f"({', '.join(LATENT_UPSCALERS + PIXEL_UPSCALERS)}) nor an existing model file; fix the name or path."
        )
    for index, folder in enumerate(spec.generation.embedding_dirs):
        if not folder.is_dir():
            raise SpecError(f"{path}: generation.embedding_dirs[{index}]: {folder} is not a folder; fix the path "
                            "(relative paths are taken from the spec's folder).")
    for name, options in spec.scorers.options.items():
        for field in ("model", "head", "references"):
            value = getattr(options, field)
            if value is not None and Path(value).is_absolute() and not Path(value).exists():
                raise SpecError(
                    f"{path}: scorers.{name}.{field}: {value} does not exist; fix the path or give a hub id."
                )


