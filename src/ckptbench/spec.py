"""The benchmark spec: what to generate with which checkpoints and how to score it, loaded from TOML.

Every table is strict: an unknown key is an error naming the key, the file and the closest valid key.
Relative paths are resolved against the spec file's folder when the spec is loaded, so a loaded
``BenchmarkSpec`` is self-contained.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ckptbench.errors import SpecError

Dtype = Literal["auto", "fp32", "fp16", "bf16"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BenchmarkInfo(_Strict):
    name: str = Field(description="Name of the benchmark, shown in the report.")
    store: Path | None = Field(
        default=None, description="Folder where images, scores and results are kept; default: the spec's folder."
    )
    bootstrap: int = Field(default=1000, ge=100, description="Bootstrap resamples for confidence intervals.")
    analysis_seed: int = Field(default=0, description="Seed of the bootstrap, so intervals are reproducible.")


class CheckpointSpec(_Strict):
    name: str = Field(description="Short unique name used in tables and the report.")
    path: Path | None = Field(
        default=None, description="A single .safetensors file (original layout) or a diffusers folder."
    )
    hub: str | None = Field(default=None, description="A Hugging Face hub id (resolved from the local cache).")
    config: Path | None = Field(
        default=None,
        description="Diffusers config folder used to build a single-file checkpoint; default: the bundled "
        "config of its family.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> CheckpointSpec:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of `path` (a local file or folder) or `hub` (a hub id)")
        return self

    @property
    def source(self) -> str:
        return str(self.path) if self.path is not None else f"hub:{self.hub}"


class SeedRange(_Strict):
    start: int = Field(alias="from", ge=0)
    to: int = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> SeedRange:
        if self.to < self.start:
            raise ValueError(f"`to` ({self.to}) is smaller than `from` ({self.start})")
        return self


class GenerationSettings(_Strict):
    sampler: str = Field(default="Euler a", description="A1111 sampler name, e.g. 'DPM++ 2M Karras'.")
    steps: int = Field(default=20, ge=1, le=500)
    cfg: float = Field(default=7.0, ge=0.0, le=50.0, description="Classifier-free guidance scale.")
    width: int = Field(default=512, ge=8, le=4096)
    height: int = Field(default=512, ge=8, le=4096)
    seeds: tuple[int, ...] = Field(default=(1, 2, 3, 4), description="A list, or {from = 1, to = 32}.")
    batch_size: int = Field(default=4, ge=1, le=256)
    negative_prompt: str = ""
    clip_skip: int = Field(default=1, ge=1, le=12,
                           description="A1111 clip skip: 1 = the text encoder's last layer, 2 = the one before.")
    embedding_dirs: tuple[Path, ...] = Field(
        default=(), description="Folders of textual-inversion embeddings, used by file stem in prompts.")
    allow_pickle_embeddings: bool = Field(
        default=False, description="Also read .pt/.bin embeddings (only with torch.load(weights_only=True)).")
    dtype: Dtype = Field(default="auto", description="'auto' is fp32 on CPU and fp16 on a GPU.")
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:1', 'mps'.")

    @field_validator("seeds", mode="before")
    @classmethod
    def _expand_seed_range(cls, value: Any) -> Any:
        if isinstance(value, dict):
            seed_range = SeedRange.model_validate(value)
            return tuple(range(seed_range.start, seed_range.to + 1))
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds_unique(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("give at least one seed")
        if len(set(value)) != len(value):
            raise ValueError("seeds repeat; each seed must appear once")
        if any(seed < 0 or seed >= 2**63 for seed in value):
            raise ValueError("seeds must be between 0 and 2**63 - 1")
        return value

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_eight(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"{value} is not a multiple of 8 (the VAE works on 8×8 pixel blocks)")
        return value


class SuiteSpec(_Strict):
    name: str
    prompts: tuple[str, ...] = Field(min_length=1, description="Inline prompts, one case each.")


class ScorerOptions(_Strict):
    model: str | None = Field(default=None, description="Backbone: a hub id or a local folder.")
    head: str | None = Field(default=None, description="Head weights file, for scorers that have one.")
    dtype: Dtype = "auto"
    batch_size: int = Field(default=16, ge=1, le=1024)


class ScorersSpec(_Strict):
    use: tuple[str, ...] = Field(min_length=1)
    options: dict[str, ScorerOptions] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split_options(cls, data: Any) -> Any:
        # In TOML each scorer's options are a sub-table named after the scorer ([scorers.clip-score]).
        if isinstance(data, dict) and "options" not in data:
            tables = {key: value for key, value in data.items() if isinstance(value, dict)}
            others = {key: value for key, value in data.items() if key not in tables}
            return {**others, "options": tables}
        return data

    @model_validator(mode="after")
    def _options_for_used(self) -> ScorersSpec:
        for name in self.options:
            if name not in self.use:
                hint = _did_you_mean(name, self.use)
                raise ValueError(f"options given for scorer '{name}', which is not in `use`{hint}")
        if len(set(self.use)) != len(self.use):
            raise ValueError("a scorer is listed twice in `use`")
        return self

    def options_for(self, name: str) -> ScorerOptions:
        return self.options.get(name, ScorerOptions())


class BenchmarkSpec(_Strict):
    benchmark: BenchmarkInfo
    checkpoints: Annotated[tuple[CheckpointSpec, ...], Field(min_length=1)]
    generation: GenerationSettings = GenerationSettings()
    suites: Annotated[tuple[SuiteSpec, ...], Field(min_length=1)]
    scorers: ScorersSpec
    spec_path: Path | None = Field(default=None, exclude=True, description="Where the spec was read from.")

    @model_validator(mode="after")
    def _unique_names(self) -> BenchmarkSpec:
        for label, names in (("checkpoint", [c.name for c in self.checkpoints]),
                             ("suite", [s.name for s in self.suites])):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{label} names must be unique; repeated: {', '.join(repeated)}")
        return self

    @property
    def store_path(self) -> Path:
        if self.benchmark.store is not None:
            return self.benchmark.store
        return self.spec_path.parent if self.spec_path else Path.cwd()

    def checkpoint(self, name: str) -> CheckpointSpec:
        return next(c for c in self.checkpoints if c.name == name)


# ---------------------------------------------------------------------------------------------------
# Loading and error messages


def load_spec(path: Path | str) -> BenchmarkSpec:
    """Read, validate and resolve a spec file; raise ``SpecError`` with one clear sentence otherwise."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: spec file not found; check the path.")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{path}: not valid TOML ({error}); fix the syntax at that line.") from None
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a UTF-8 text file; save the spec as UTF-8 TOML.") from None
    return spec_from_dict(raw, path)


def spec_from_dict(raw: dict[str, Any], path: Path) -> BenchmarkSpec:
    """Validate a parsed spec; relative paths are taken relative to ``path``'s folder."""
    try:
        spec = BenchmarkSpec.model_validate({**raw, "spec_path": path.resolve()})
    except ValidationError as error:
        raise SpecError(_describe(error, path)) from None
    spec = _resolve_paths(spec, path.resolve().parent)
    _check_files_exist(spec, path)
    return spec


def _resolve_paths(spec: BenchmarkSpec, base: Path) -> BenchmarkSpec:
    def resolve(value: Path | None) -> Path | None:
        return None if value is None else (base / value.expanduser()).resolve()

    checkpoints = tuple(
        c.model_copy(update={"path": resolve(c.path), "config": resolve(c.config)}) for c in spec.checkpoints
    )
    info = spec.benchmark.model_copy(update={"store": resolve(spec.benchmark.store) or base})
    generation = spec.generation.model_copy(
        update={"embedding_dirs": tuple(resolve(folder) for folder in spec.generation.embedding_dirs)})
    options = {
        name: opts.model_copy(update={"head": _resolve_if_local(opts.head, base),
                                      "model": _resolve_if_local(opts.model, base)})
        for name, opts in spec.scorers.options.items()
    }
    scorers = spec.scorers.model_copy(update={"options": options})
    return spec.model_copy(update={"checkpoints": checkpoints, "benchmark": info, "scorers": scorers,
                                   "generation": generation})


def _resolve_if_local(value: str | None, base: Path) -> str | None:
    """A scorer source is a hub id ('org/name') unless it looks like, or exists as, a local path."""
    if value is None:
        return None
    candidate = (base / Path(value).expanduser())
    looks_local = value.startswith((".", "/", "~")) or candidate.exists() or value.endswith((".pth", ".pt",
                                                                                            ".safetensors"))
    return str(candidate.resolve()) if looks_local else value


def _check_files_exist(spec: BenchmarkSpec, path: Path) -> None:
    for index, checkpoint in enumerate(spec.checkpoints):
        for field in ("path", "config"):
            value = getattr(checkpoint, field)
            if value is not None and not value.exists():
                raise SpecError(
                    f"{path}: checkpoints[{index}].{field} ('{checkpoint.name}'): {value} does not exist; "
                    "fix the path (relative paths are taken from the spec's folder)."
                )
    for index, folder in enumerate(spec.generation.embedding_dirs):
        if not folder.is_dir():
            raise SpecError(f"{path}: generation.embedding_dirs[{index}]: {folder} is not a folder; fix the path "
                            "(relative paths are taken from the spec's folder).")
    for name, options in spec.scorers.options.items():
        for field in ("model", "head"):
            value = getattr(options, field)
            if value is not None and Path(value).is_absolute() and not Path(value).exists():
                raise SpecError(
                    f"{path}: scorers.{name}.{field}: {value} does not exist; fix the path or give a hub id."
                )


def _describe(error: ValidationError, path: Path) -> str:
    messages = [_describe_one(item, path) for item in error.errors()]
    if len(messages) == 1:
        return messages[0]
    return messages[0] + f" (and {len(messages) - 1} more problem(s): " + "; ".join(
        m.split(": ", 1)[-1] for m in messages[1:4]) + ")"


def _describe_one(item: Any, path: Path) -> str:
    loc = tuple(part for part in item["loc"] if part not in ("function-after", "function-before"))
    where = _format_loc(loc)
    kind = item["type"]
    if kind == "extra_forbidden":
        valid = _valid_keys_at(loc[:-1])
        hint = _did_you_mean(str(loc[-1]), valid)
        listing = f" Valid keys here: {', '.join(sorted(valid))}." if valid and not hint else ""
        return f"{path}: unknown key '{where}'{hint}; remove or rename it.{listing}"
    if kind == "missing":
        return f"{path}: missing required key '{where}'; add it."
    given = item.get("input")
    shown = f" (got {given!r})" if not isinstance(given, dict | list) else ""
    message = item["msg"].removeprefix("Value error, ")
    return f"{path}: {where or 'spec'}: {message}{shown}; fix this value."


def _format_loc(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text.replace(".options.", ".")


def _valid_keys_at(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] | None = BenchmarkSpec
    parts = [part for part in loc if not isinstance(part, int)]
    index = 0
    while index < len(parts) and model is not None:
        if model is ScorersSpec and parts[index] == "options":
            model, index = ScorerOptions, index + 2  # skip the scorer's name
            continue
        field = model.model_fields.get(str(parts[index]))
        model = _model_of(field.annotation) if field else None
        index += 1
    if model is None:
        return []
    return [f.alias or name for name, f in model.model_fields.items() if name not in ("spec_path", "options")]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found:
            return found
    return None


def _did_you_mean(name: str, candidates: Any) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""
