"""The benchmark spec's model: what to generate with which checkpoints and how to score it.

Every table is strict: an unknown key is an error naming the key, the file and the closest valid key
(``spec_errors``). ``spec_load`` reads a TOML file into a ``BenchmarkSpec`` and resolves its paths.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ckptbench.presets import PresetName
from ckptbench.spec_errors import did_you_mean
from ckptbench.sweep import SweepAxis, split_sweep_lists

Dtype = Literal["auto", "fp32", "fp16", "bf16"]
PredictionType = Literal["epsilon", "v"]
SuiteKind = Literal["quality", "style", "lora"]
SuiteFormat = Literal["ghostreview-prompts", "ghostreview-styles", "ghostreview-loras", "partiprompts", "infotext"]
BuiltinSuite = Literal["quality", "styles", "compositional"]
ExecutorName = Literal["local", "ray"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BenchmarkInfo(_Strict):
    name: str = Field(description="Name of the benchmark, shown in the report.")
    store: Path | None = Field(
        default=None, description="Folder where images, scores and results are kept; default: the spec's folder."
    )
    bootstrap: int = Field(default=1000, ge=100,
                           description="Bootstrap resamples for the rank distributions (intervals are cluster-t).")
    analysis_seed: int = Field(default=0, description="Seed of the bootstrap, so rank distributions are reproducible.")
    preset: PresetName | None = Field(
        default=None, description="Start from a preset ('ghostreview', 'quick'); every key set here overrides it."
    )
    executor: ExecutorName = Field(
        default="local", description="'local' runs everything in this process; 'ray' spreads generation and "
        "scoring over a Ray cluster (pip install ckptbench[ray]); `ckptbench run --executor` overrides it.")
    ray_address: str | None = Field(
        default=None, description="Ray cluster to join ('auto', 'ray://host:10001'); default: start a local Ray "
        "instance on this machine.")
    ray_max_retries: int = Field(
        default=2, ge=0, le=10, description="How often Ray retries a failed or lost task before ckptbench records "
        "it as failed.")
    shard_images: int = Field(
        default=0, ge=0, le=100_000, description="Images per Ray generation task (whole batches); 0 = enough "
        "shards of each checkpoint to keep every worker busy, at most 64 images each.")


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
    arch: str | None = Field(
        default=None,
        description="Declare the family (a registered one: 'sd15', 'sd2', 'sdxl', …, or 'sd2-v' for SD2 with "
        "v-prediction); checked against the tensors (a mismatch is an error); 'sd2-v' also sets the prediction "
        "type.",
    )
    prediction: PredictionType | None = Field(
        default=None, description="Override the detected prediction type: 'epsilon' or 'v'."
    )
    zero_terminal_snr: bool | None = Field(
        default=None, strict=True,
        description="Override the detected noise schedule: true samples with the zero-terminal-SNR rescaled "
        "schedule (NoobAI-style v-prediction files say so with a `ztsnr` marker), false with the standard one; "
        "overriding what the file says is logged and recorded in provenance.",
    )
    vae: Path | None = Field(
        default=None,
        description="External VAE for this checkpoint: a single-file VAE .safetensors (original layout) or a "
        "diffusers VAE folder; overrides [generation] vae and the baked VAE.",
    )
    text_encoders: tuple[Path, ...] = Field(
        default=(),
        description="Separate text-encoder files for a Flux or SD3.5 transformer-only file (clip_l, clip_g, t5xxl "
        ".safetensors, as ComfyUI and Forge load them), each recognised by its tensors; they replace encoders the "
        "checkpoint holds.",
    )
    t5_tokenizer: Path | None = Field(
        default=None,
        description="The T5 tokenizer of a Flux or SD3.5 checkpoint: a folder with tokenizer.json (e.g. the "
        "tokenizer_2 folder of FLUX.1-dev) or the tokenizer.json file; default: looked up in the local Hugging "
        "Face cache.",
    )
    allow_pickle: bool = Field(
        default=False,
        strict=True,  # a security opt-in: only a real TOML boolean counts, not "yes" or 1
        description="Allow this checkpoint (and its vae) to be a pickle file (.ckpt/.pt/.pth/.bin); it is read "
        "with torch.load(weights_only=True) only.",
    )

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str | None) -> str | None:
        from ckptbench.models.families import family_names

        known = (*family_names(), "sd2-v")
        if value is not None and value not in known:
            raise ValueError(f"unknown arch '{value}'{did_you_mean(value, known)}; known: {', '.join(known)}")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CheckpointSpec:
        if (self.path is None) == (self.hub is None):
            raise ValueError("give exactly one of `path` (a local file or folder) or `hub` (a hub id)")
        if self.arch == "sd2-v" and self.prediction == "epsilon":
            raise ValueError("arch = 'sd2-v' means v-prediction but prediction = 'epsilon'; drop one of them")
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


MAX_SEEDS = 1_000_000
_SEED_TEXT = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def _expand_seeds(value: Any) -> Any:
    if isinstance(value, dict):
        seed_range = SeedRange.model_validate(value)
        return tuple(range(seed_range.start, seed_range.to + 1))
    if isinstance(value, str):
        return _seeds_from_text(value)
    return value


def _seeds_from_text(text: str) -> tuple[int, ...]:
    """Seeds written as text, as A1111's X/Y/Z plot takes them: "1-4", "7", "1, 2, 10-12"."""
    seeds: list[int] = []
    for part in text.split(","):
        match = _SEED_TEXT.match(part)
        if match is None:
            raise ValueError(f"'{text}' is not a list of seeds; write [1, 2, 3], \"1-4\", \"1, 5-8\" or "
                             "{from = 1, to = 4}")
        start, end = int(match[1]), int(match[2] or match[1])
        if end < start:
            raise ValueError(f"the range '{part.strip()}' runs backwards; write the smaller seed first")
        if len(seeds) + end - start + 1 > MAX_SEEDS:
            raise ValueError(f"'{text}' names more than {MAX_SEEDS:,} seeds")
        seeds.extend(range(start, end + 1))
    return tuple(seeds)


def _check_seeds(value: tuple[int, ...]) -> tuple[int, ...]:
    if not value:
        raise ValueError("give at least one seed")
    if len(set(value)) != len(value):
        raise ValueError("seeds repeat; each seed must appear once")
    if any(seed < 0 or seed >= 2**63 for seed in value):
        raise ValueError("seeds must be between 0 and 2**63 - 1")
    return value


LATENT_UPSCALERS = ("latent", "latent-antialiased", "latent-bicubic", "latent-bicubic-antialiased", "latent-nearest",
                    "latent-nearest-exact")
PIXEL_UPSCALERS = ("lanczos", "nearest")
PICKLE_UPSCALER_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


class HiresSpec(_Strict):
    """A1111's hires fix: sample at the base size, upscale, then img2img at the larger size."""

    scale: float = Field(default=2.0, ge=1.0, le=8.0, description="Upscale factor of the second pass.")
    denoise: float = Field(default=0.7, gt=0.0, le=1.0, description="Denoising strength of the second pass.")
    steps: int = Field(default=0, ge=0, le=500, description="Steps of the second pass; 0 = the base steps.")
    upscaler: str = Field(
        default="latent",
        description=f"One of {', '.join(LATENT_UPSCALERS + PIXEL_UPSCALERS)}, or an ESRGAN-family model file "
        "(.safetensors; .pth only with allow_pickle).",
    )
    allow_pickle: bool = Field(
        default=False, description="Allow a pickle upscaler file (.pth/.pt), loaded only with weights_only=True."
    )
    enabled: bool = Field(default=True, strict=True, description="false = off, as if the table were absent; "
                          "[false, true] sweeps the hires fix off and on.")

    @property
    def upscaler_is_file(self) -> bool:
        return self.upscaler not in LATENT_UPSCALERS + PIXEL_UPSCALERS


class GenerationSettings(_Strict):
    sampler: str = Field(default="Euler a", description="A1111 sampler name ('DPM++ 2M', or with its schedule "
                         "'DPM++ 2M Karras'), or a ComfyUI sampler name ('dpmpp_2m').")
    scheduler: str | None = Field(
        default=None, description="A1111 'Schedule type' ('Karras', 'Exponential', 'Uniform', …) or ComfyUI "
        "scheduler ('karras', 'normal', …); default: the sampler's own, as A1111's 'Automatic'.")
    steps: int = Field(default=20, ge=1, le=500)
    cfg: float = Field(default=7.0, ge=0.0, le=50.0, description="Classifier-free guidance scale.")
    distilled_cfg: float = Field(
        default=3.5, ge=0.0, le=30.0,
        description="FLUX.1 [dev]'s distilled guidance (Forge's 'Distilled CFG Scale'); Flux samples with CFG 1, "
        "as Forge and ComfyUI do by default, so `cfg` applies to the other families.")
    width: int = Field(default=512, ge=8, le=4096)
    height: int = Field(default=512, ge=8, le=4096)
    seeds: tuple[int, ...] = Field(default=(1, 2, 3, 4),
                                   description='A list, a range as text ("1-32", "1, 5-8"), or {from = 1, to = 32}.')
    lora_seeds: tuple[int, ...] | None = Field(
        default=None, description="Seeds of LoRA suites (GhostReview makes 20 images per LoRA); default: `seeds`."
    )
    batch_size: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = Field(
        default=4, description="Images per pipeline call; 'auto' chooses from free GPU memory (4 on a CPU).")
    compile: bool = Field(
        default=False, description="torch.compile the UNet (CUDA: slower first batch, faster after).")
    negative_prompt: str = ""
    clip_skip: int = Field(default=1, ge=1, le=12,
                           description="A1111 clip skip: 1 = the text encoder's last layer, 2 = the one before.")
    embedding_dirs: tuple[Path, ...] = Field(
        default=(), description="Folders of textual-inversion embeddings, used by file stem in prompts.")
    allow_pickle_embeddings: bool = Field(
        default=False, description="Also read .pt/.bin embeddings (only with torch.load(weights_only=True)).")
    dtype: Dtype = Field(default="auto", description="'auto' is fp32 on CPU and fp16 on a GPU.")
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda', 'cuda:1', 'mps'.")
    vae: Path | None = Field(
        default=None,
        description="External VAE for every checkpoint that does not name its own: a single-file VAE "
        ".safetensors or a diffusers VAE folder.",
    )
    lora_dirs: tuple[Path, ...] = Field(
        default=(), description="Folders where <lora:name> tags and suite LoRAs are looked up by file stem."
    )
    default_lora_weight: float = Field(default=0.8, ge=-10.0, le=10.0,
                                       description="Weight of a LoRA named without one (<lora:name>).")
    allow_pickle_loras: bool = Field(
        default=False, description="Allow pickle LoRA files (.pt/.ckpt/.bin), loaded only with weights_only=True."
    )
    hires: HiresSpec | None = Field(default=None, description="A1111 hires fix; absent = off.")
    sweep: tuple[SweepAxis, ...] = Field(
        default=(), description="Axes of a sweep, in the order written: filled from settings given as lists "
        "(cfg, steps, sampler, clip_skip, default_lora_weight, prompt_sr, hires.enabled); see docs/sweeps.md.")

    @model_validator(mode="before")
    @classmethod
    def _lists_are_sweeps(cls, data: Any) -> Any:
        return split_sweep_lists(data)

    @field_validator("seeds", "lora_seeds", mode="before")
    @classmethod
    def _expand_seed_range(cls, value: Any) -> Any:
        return _expand_seeds(value)

    @field_validator("seeds", "lora_seeds")
    @classmethod
    def _seeds_unique(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        return None if value is None else _check_seeds(value)

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_eight(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"{value} is not a multiple of 8 (the VAE works on 8×8 pixel blocks)")
        return value


_SUITE_SOURCES = ("prompts", "file", "builtin", "format")


class SuiteSpec(_Strict):
    """One suite of cases, from exactly one source: inline ``prompts``, a suite ``file`` (ckptbench TOML), a
    ``builtin`` suite shipped with ckptbench, or an external ``format`` read from ``path``."""

    name: str = Field(description="Name of the suite in tables; default: the builtin's, file's or format's name.")
    prompts: tuple[str, ...] | None = Field(default=None, min_length=1, description="Inline prompts, one case each.")
    file: Path | None = Field(default=None, description="A ckptbench suite file (TOML, see docs/suites.md).")
    builtin: BuiltinSuite | None = Field(default=None, description="A suite shipped with ckptbench.")
    format: SuiteFormat | None = Field(default=None, description="An external prompt source read from `path`.")
    path: Path | None = Field(default=None, description="File or folder the `format` is read from.")
    kind: SuiteKind | None = Field(default=None, description="quality, style or lora; default: from the source.")
    seeds: tuple[int, ...] | None = Field(default=None, description="Seeds of this suite; default: [generation].")
    negative_prompt: str | None = Field(default=None, description="Negative prompt of cases that set none.")
    references: Path | None = Field(
        default=None, description="Folder of reference images (style suites: one sub-folder per style).")
    showcase_models: Path | None = Field(
        default=None, description="LoRAUseModel-style CSV naming the checkpoint each showcase was made with.")
    lora_files: dict[str, str] = Field(
        default_factory=dict, description="LoRA name → file name, path or hash ('autov2:…'), for every case.")
    category: tuple[str, ...] = Field(default=(), description="partiprompts: keep these categories only.")
    challenge: tuple[str, ...] = Field(default=(), description="partiprompts: keep these challenges only.")
    limit: int | None = Field(default=None, ge=1, description="Keep the first N cases (after filtering).")

    @model_validator(mode="before")
    @classmethod
    def _default_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and "name" not in data:
            if isinstance(data.get("builtin"), str):
                return {**data, "name": data["builtin"]}
            if isinstance(data.get("file"), str):
                return {**data, "name": Path(data["file"]).stem}
            if isinstance(data.get("format"), str):
                return {**data, "name": data["format"]}
        return data

    @field_validator("seeds", mode="before")
    @classmethod
    def _expand_seed_range(cls, value: Any) -> Any:
        return _expand_seeds(value)

    @field_validator("seeds")
    @classmethod
    def _seeds_unique(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        return None if value is None else _check_seeds(value)

    @model_validator(mode="after")
    def _one_source(self) -> SuiteSpec:
        given = [key for key in _SUITE_SOURCES if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one source: `prompts`, `file`, `builtin` or `format` (with `path`)"
                             + (f"; got {', '.join(given)}" if given else ""))
        if (self.format is None) != (self.path is None):
            raise ValueError("`path` goes with `format` (the file or folder that format is read from)")
        if (self.category or self.challenge) and self.format != "partiprompts":
            raise ValueError("`category` and `challenge` filter PartiPrompts; use them with format = 'partiprompts'")
        if self.showcase_models is not None and self.format not in ("ghostreview-loras", None):
            raise ValueError("`showcase_models` belongs to LoRA suites (format 'ghostreview-loras' or a suite file)")
        return self


class AnalysisSpec(_Strict):
    """How results are analysed (docs/results.md)."""

    baseline: str | None = Field(
        default=None, description="Checkpoint every other one is compared with on shared cells (pool-independent).")
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="Good-image threshold τ per scorer (overrides the documented defaults).")
    composite: dict[str, float] = Field(
        default_factory=dict, description="Weights of the composite ranking, per scorer.")
    within_prompt: tuple[str, ...] = Field(
        default=(), description="More scorers whose values are compared only within a prompt (preference models).")
    rank_by: str | None = Field(
        default=None, description="What the leaderboard ranks by: a scorer of scorers.use, \"composite\", or \"human\" "
        "(arena votes, docs/arena.md); default: the composite when weights are given, else the first scorer of "
        "scorers.use.")
    multiplicity: Literal["per-scorer", "run"] = Field(
        default="per-scorer", description="Holm families: per suite × scorer (\"per-scorer\") or every paired test of "
        "the run together (\"run\").")


class ScorerOptions(_Strict):
    model: str | None = Field(default=None, description="Backbone: a hub id or a local folder.")
    head: str | None = Field(default=None, description="Head weights file, for scorers that have one.")
    references: str | None = Field(
        default=None, description="Folder (or file) of reference images: required by distribution scorers "
        "(kid, fid, cmmd); for style scorers, used for cases that name no references of their own.")
    dtype: Dtype = "auto"
    batch_size: int = Field(default=16, ge=1, le=1024)
    allow_pickle: bool = Field(
        default=False, description="Read this scorer's pickle weight files (.pt/.bin, e.g. ImageReward.pt) with "
        "torch.load(weights_only=True); without it they are refused. Only for files you trust.")


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
                hint = did_you_mean(name, self.use)
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
    analysis: AnalysisSpec = AnalysisSpec()
    spec_path: Path | None = Field(default=None, exclude=True, description="Where the spec was read from.")

    @model_validator(mode="after")
    def _unique_names(self) -> BenchmarkSpec:
        for label, names in (("checkpoint", [c.name for c in self.checkpoints]),
                             ("suite", [s.name for s in self.suites])):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{label} names must be unique; repeated: {', '.join(repeated)}")
        names = [c.name for c in self.checkpoints]
        if self.analysis.baseline is not None and self.analysis.baseline not in names:
            hint = did_you_mean(self.analysis.baseline, names)
            raise ValueError(f"analysis.baseline '{self.analysis.baseline}' is not a checkpoint name{hint}")
        rank_by = self.analysis.rank_by
        if rank_by is not None and rank_by not in ("composite", "human") and rank_by not in self.scorers.use:
            hint = did_you_mean(rank_by, [*self.scorers.use, "composite", "human"])
            raise ValueError(f"analysis.rank_by '{rank_by}' is neither a scorer of scorers.use nor 'composite' or "
                             f"'human'{hint}")
        for table in ("thresholds", "composite"):
            known = set(self.scorers.use) | {name.split(":", 1)[0] for name in self.scorers.use}
            for scorer in getattr(self.analysis, table):
                if scorer not in known:
                    hint = did_you_mean(scorer, sorted(known))
                    raise ValueError(f"analysis.{table} names scorer '{scorer}', which is not in scorers.use{hint}")
        return self

    @property
    def store_path(self) -> Path:
        if self.benchmark.store is not None:
            return self.benchmark.store
        return self.spec_path.parent if self.spec_path else Path.cwd()
