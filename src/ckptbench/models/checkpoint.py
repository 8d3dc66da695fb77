"""Resolving a checkpoint entry of the spec: its files, what they are, its VAE, and its content identity."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ckptbench.errors import ModelFileError, WeightsUnavailableError
from ckptbench.hashing import DigestCache, autov2, content_key, relative_files, sha256_file, tree_sha256
from ckptbench.models.detect import Detection, Family, Prediction, detect, detect_kind
from ckptbench.models.families import get_family
from ckptbench.models.flow_parts import FlowParts, ResolvedTextEncoder, ResolvedTokenizer, flow_parts
from ckptbench.models.safety import PICKLE_SUFFIXES, read_safetensors_header
from ckptbench.models.state_dict import ModelFile, open_model_file
from ckptbench.spec import CheckpointSpec

CheckpointKind = Literal["single-file", "diffusers-folder"]
BUNDLED_CONFIGS = Path(__file__).resolve().parent / "configs"
FOLDER_FILES = (".safetensors", ".bin", ".json", ".txt", ".model")  # the files of a diffusers folder's identity

__all__ = ["PICKLE_SUFFIXES", "ResolvedCheckpoint", "ResolvedVae", "resolve_checkpoint", "resolve_vae"]


def bundled_config(family: Family, prediction: Prediction, variant: str | None = None) -> Path:
    """The bundled diffusers config folder of a family (SD2: one per prediction type; Flux, SD3.5: per variant)."""
    return get_family(family).config_dir(prediction, variant)


def folder_digest(root: Path, files: Iterable[Path], cache: DigestCache | None = None) -> str:
    """Digest of ``files`` under ``root``, each named by its path relative to ``root``."""
    return tree_sha256((str(f.relative_to(root)), sha256_file(f, cache)) for f in files)


@functools.lru_cache(maxsize=64)
def config_digest(folder: Path) -> str:
    """Digest of a config folder's JSON/text files: a changed config can change the pixels."""
    return folder_digest(folder, relative_files(folder, (".json", ".txt")))


@dataclass(frozen=True)
class ResolvedVae:
    path: Path
    kind: CheckpointKind
    sha256: str
    allow_pickle: bool = False


@dataclass(frozen=True)
class ResolvedCheckpoint:
    name: str
    source: str  # what the spec said: a path or hub:org/name
    kind: CheckpointKind
    path: Path
    sha256: str
    config: Path | None = None  # the spec's config folder; None: the bundled config of the family
    family: Family = "sd15"
    prediction: Prediction = "epsilon"
    vae: ResolvedVae | None = None  # an external VAE replacing the baked one
    allow_pickle: bool = False
    file_format: str = "safetensors"
    detection: Mapping[str, Any] = field(default_factory=dict, compare=False)  # what was detected and why
    zero_terminal_snr: bool = False  # sampled with the zero-terminal-SNR rescaled noise schedule
    variant: str | None = None  # the family's variant (Flux dev/schnell, SD3.5 large/medium)
    text_encoders: tuple[ResolvedTextEncoder, ...] = ()  # separate text-encoder files (Flux, SD3.5)
    t5_tokenizer: ResolvedTokenizer | None = None  # Flux, SD3.5

    @property
    def autov2(self) -> str:
        return autov2(self.sha256)

    @property
    def config_dir(self) -> Path:
        return self.config or bundled_config(self.family, self.prediction, self.variant)

    @property
    def identity(self) -> str:
        """Everything about the model that changes pixels: weights, external VAE, family, prediction, config."""
        fields: dict[str, Any] = {
            "checkpoint": self.sha256, "vae": self.vae.sha256 if self.vae else None, "family": self.family,
            "prediction": self.prediction,
            "config": config_digest(self.config_dir) if self.kind == "single-file" else None,
        }
        # Absent rather than false or empty, so identities of the other models stay as they were.
        if self.zero_terminal_snr:
            fields["zero_terminal_snr"] = True
        if self.text_encoders:
            fields["text_encoders"] = {part.role: part.sha256 for part in self.text_encoders}
        if self.t5_tokenizer is not None:
            fields["t5_tokenizer"] = self.t5_tokenizer.digest
        return content_key(fields)


def resolve_checkpoint(spec: CheckpointSpec, cache: DigestCache | None = None, default_vae: Path | None = None
                       ) -> ResolvedCheckpoint:
    """Find the checkpoint's files (hub ids from the local Hugging Face cache), check, identify and hash them."""
    path = _hub_snapshot(spec.hub) if spec.hub else spec.path
    assert path is not None
    vae_path = spec.vae or default_vae
    vae = None
    if vae_path is not None:
        where = f"checkpoint '{spec.name}': vae" if spec.vae else f"[generation] vae (for checkpoint '{spec.name}')"
        vae = resolve_vae(vae_path, where, spec.allow_pickle, cache)
    if path.is_dir():
        return _resolve_folder(spec, path, vae, cache)
    if not path.is_file():
        raise ModelFileError(f"checkpoint '{spec.name}': {path} does not exist; fix `path` in the spec.")
    return _resolve_single_file(spec, path, vae, cache)


def _resolve_single_file(spec: CheckpointSpec, path: Path, vae: ResolvedVae | None, cache: DigestCache | None
                         ) -> ResolvedCheckpoint:
    owner = f"checkpoint '{spec.name}'"
    try:
        model = open_model_file(path, spec.allow_pickle, f"set allow_pickle = true for {owner}")
    except ModelFileError as error:
        raise type(error)(f"{owner}: {error}") from None
    found = detect(model)
    if found.kind != "checkpoint":
        raise ModelFileError(f"{owner}: {path.name} is a {found.kind} file, not a Stable Diffusion checkpoint "
                             "(no model.diffusion_model.* tensors); point `path` at a checkpoint.")
    flow = found.family is not None and get_family(found.family).default_prediction == "flow"
    if not found.has_text_encoder and not flow:
        raise ModelFileError(f"{owner}: {path.name} holds a UNet but no text encoder (no cond_stage_model.* or "
                             "conditioner.* tensors); ckptbench needs a full checkpoint with its text encoder(s).")
    if found.problem:
        raise ModelFileError(f"{owner}: {path.name}: {found.problem}.")
    assert found.family is not None  # a text encoder's layout always names the family
    family = _check_declared_family(spec, found.family, found.evidence[0], path)
    prediction, prediction_source = decide_prediction(model, found, family, spec)
    parts = flow_parts(spec, model, get_family(family), cache) if flow else FlowParts()
    if not flow and (spec.text_encoders or spec.t5_tokenizer):
        raise ModelFileError(f"{owner}: `text_encoders` and `t5_tokenizer` are for Flux and SD3.5 checkpoints; "
                             f"{path.name} is {_an(family)} {family} checkpoint with its own; remove them.")
    if not found.has_vae and vae is None:
        raise ModelFileError(
            f"{owner}: {path.name} has no baked VAE (no first_stage_model.* tensors); set `vae` for this "
            "checkpoint or under [generation] to a VAE .safetensors file or a diffusers VAE folder.")
    config = spec.config or bundled_config(family, prediction, found.variant)
    warnings = list(found.warnings)
    ztsnr, ztsnr_source = decide_zero_terminal_snr(found.zero_terminal_snr, found.zero_terminal_snr_source, family,
                                                   spec, warnings)
    if "alphas_cumprod" in model.tensors and (
            mismatch := _schedule_mismatch(model, config, spec.allow_pickle, ztsnr)):
        warnings.append(mismatch)
    detection = _record(model.format, found, family, prediction, prediction_source, spec, config, vae, warnings)
    detection.update(zero_terminal_snr=ztsnr, zero_terminal_snr_source=ztsnr_source, variant=found.variant,
                     **parts.record())
    return ResolvedCheckpoint(spec.name, spec.source, "single-file", path, sha256_file(path, cache), spec.config,
                              family, prediction, vae, spec.allow_pickle, model.format, detection, ztsnr,
                              found.variant, parts.text_encoders, parts.tokenizer)


def _an(name: str) -> str:
    return "an" if name[:1] in "aeios" else "a"  # "an sd15", "an sdxl", "a flux"


def _spec_family(spec: CheckpointSpec) -> Family | None:
    if spec.arch is None:
        return None
    return "sd2" if spec.arch == "sd2-v" else spec.arch  # type: ignore[return-value]


def _check_declared_family(spec: CheckpointSpec, detected: Family, evidence: str, path: Path) -> Family:
    """``arch`` in the spec is a declaration checked against the tensors: a mismatch cannot load."""
    declared = _spec_family(spec)
    if declared is not None and declared != detected:
        raise ModelFileError(
            f"checkpoint '{spec.name}': arch = '{spec.arch}' in the spec, but {path} is {_an(detected)} {detected} "
            f"checkpoint ({evidence}), whose tensors cannot fill {_an(declared)} {declared} pipeline; fix or remove "
            "`arch`.")
    return detected


def decide_prediction(model: ModelFile, found: Detection, family: Family, spec: CheckpointSpec | None = None
                      ) -> tuple[Prediction, str]:
    """The prediction type, in order: the spec, markers in the file, the spec's config folder, the family's
    default (epsilon for sd15/sdxl) and, for SD2 without any of these, A1111's test on the UNet."""
    declared = _spec_prediction(spec) if spec is not None else None
    if get_family(family).default_prediction == "flow":
        if declared is not None:
            raise ModelFileError(f"checkpoint '{spec.name}': prediction = '{spec.prediction}' is set, but {family} "
                                 "is a flow-matching model, which predicts the flow; remove `prediction`.")
        return "flow", f"{family} is a flow-matching (rectified flow) model"
    if declared is not None:
        return declared
    if found.prediction is not None:
        return found.prediction, found.prediction_source or "marker"
    if spec is not None and spec.config is not None:
        stated = _config_prediction(spec.config)
        if stated is not None:
            return stated, f"scheduler prediction_type of the spec's config folder {spec.config.name}"
    config = spec.config if spec is not None and spec.config is not None else bundled_config(family, "epsilon")
    allow_pickle = spec.allow_pickle if spec is not None else model.format == "pickle"
    return get_family(family).undecided_prediction(model, config, allow_pickle)


def decide_zero_terminal_snr(stated: bool | None, stated_source: str | None, family: Family,
                             spec: CheckpointSpec | None, warnings: list[str]) -> tuple[bool, str]:
    """Whether to sample with the zero-terminal-SNR schedule, in order: the spec, the file, the standard schedule.

    A spec that contradicts the file is obeyed, and the contradiction is added to ``warnings`` (logged
    and recorded in provenance), so an image made with another schedule than the model's is never silent.
    """
    declared = spec.zero_terminal_snr if spec is not None else None
    if declared is not None and get_family(family).default_prediction == "flow":
        raise ModelFileError(f"checkpoint '{spec.name}': zero_terminal_snr is set, but {family} is a flow-matching "
                             "model without a discrete noise schedule; remove `zero_terminal_snr`.")
    if declared is not None:
        if stated is not None and stated != declared:
            warnings.append(f"the file says zero terminal SNR is {'on' if stated else 'off'} ({stated_source}), but "
                            f"the spec sets zero_terminal_snr = {str(declared).lower()}: sampled with the "
                            f"{'rescaled zero-terminal-SNR' if declared else 'standard'} schedule, against the file")
        return declared, f"spec: zero_terminal_snr = {str(declared).lower()}"
    if stated is not None:
        return stated, stated_source or "marker"
    return False, "no zero-terminal-SNR marker: the standard noise schedule"


def _spec_prediction(spec: CheckpointSpec) -> tuple[Prediction, str] | None:
    """The prediction type the spec declares, by ``prediction`` or by ``arch = 'sd2-v'``; None: not declared."""
    if spec.prediction:
        return spec.prediction, f"spec: prediction = '{spec.prediction}'"
    if spec.arch == "sd2-v":
        return "v", "spec: arch = 'sd2-v'"
    return None


def a1111_prediction_test(path: Path, config: Path, allow_pickle: bool) -> tuple[Prediction, str]:
    """A1111's v-prediction test for SD2 files without a marker (``a1111_v_prediction_test``), once per file."""
    stat = path.stat()
    return _a1111_test_cached(path.resolve(), stat.st_size, stat.st_mtime_ns, config, allow_pickle)


@functools.lru_cache(maxsize=16)
def _a1111_test_cached(path: Path, _size: int, _mtime_ns: int, config: Path, allow_pickle: bool
                       ) -> tuple[Prediction, str]:
    """Builds the UNet on the CPU once per file and process (seconds for a real SD2 file)."""
    import torch

    from ckptbench.models.components import a1111_v_prediction_test, build_unet, read_original_state

    state = read_original_state(path, allow_pickle, skip_vae=True)
    try:
        unet = build_unet(state, config, torch.float32)
    except Exception as error:
        raise ModelFileError(f"{path}: building the SD2 UNet to test for v-prediction failed ({type(error).__name__}"
                             f": {str(error).splitlines()[0][:200]}); set `prediction` (and `config` for a "
                             "non-standard size) for this checkpoint in the spec.") from None
    is_v, mean = a1111_v_prediction_test(unet)
    verdict: Prediction = "v" if is_v else "epsilon"
    return verdict, (f"A1111's SD2 test (no marker in the file): mean(UNet output − input) at t=999 is {mean:.3f}, "
                     f"{'below' if is_v else 'not below'} −1 → {verdict}")


def _config_prediction(config: Path) -> Prediction | None:
    scheduler = config / "scheduler" / "scheduler_config.json"
    if not scheduler.is_file():
        return None
    stated = json.loads(scheduler.read_text(encoding="utf-8")).get("prediction_type")
    return {"v_prediction": "v", "epsilon": "epsilon"}.get(stated or "")  # type: ignore[return-value]


def _schedule_mismatch(model: ModelFile, config: Path, allow_pickle: bool, ztsnr: bool) -> str | None:
    """A file's own ``alphas_cumprod`` that differ from the schedule it is sampled with (the config's, rescaled
    to zero terminal SNR when that is on)."""
    from ckptbench.models.noise_schedule import alphas_cumprod_of, rescale_zero_terminal_snr
    from ckptbench.models.state_dict import load_tensors

    scheduler_file = config / "scheduler" / "scheduler_config.json"
    if not scheduler_file.is_file():
        return None
    settings = json.loads(scheduler_file.read_text(encoding="utf-8"))
    if settings.get("beta_schedule", "scaled_linear") != "scaled_linear" or settings.get("trained_betas"):
        return None
    steps = int(settings.get("num_train_timesteps", 1000))
    expected = alphas_cumprod_of(settings)
    assert expected is not None
    if ztsnr:
        expected = rescale_zero_terminal_snr(expected)
    found = load_tensors(model.path, allow_pickle, lambda name: name == "alphas_cumprod")["alphas_cumprod"]
    if found.shape != expected.shape:
        return f"the file's alphas_cumprod has {found.numel()} steps, the config {steps}; sampled with the config's"
    gap = float((found.double() - expected).abs().max())
    if gap > 1e-3:
        schedule = "zero-terminal-SNR rescaled scaled-linear" if ztsnr else "scaled-linear"
        return (f"the file's alphas_cumprod differ from the config's {schedule} schedule by up to {gap:.4f}; "
                "ckptbench samples with the config's schedule")
    return None


def _record(file_format: str, found: Detection, family: Family, prediction: Prediction, prediction_source: str,
            spec: CheckpointSpec, config: Path, vae: ResolvedVae | None, warnings: list[str]) -> dict[str, Any]:
    return {
        "format": file_format,
        "family": family,
        "family_source": f"detected, as the spec's arch = '{spec.arch}' declares" if spec.arch else "detected",
        "prediction": prediction,
        "prediction_source": prediction_source,
        "config": str(config) if spec.config else f"bundled:{config.name}",
        "vae": {"path": str(vae.path), "sha256": vae.sha256} if vae else ("baked" if found.has_vae else None),
        "evidence": list(found.evidence),
        "warnings": warnings,
        "notes": list(found.notes),
    }


def resolve_vae(path: Path, owner: str, allow_pickle: bool = False, cache: DigestCache | None = None) -> ResolvedVae:
    """An external VAE: a single file (original or diffusers layout) or a diffusers VAE folder."""
    if path.is_dir():
        folder = path / "vae" if (path / "vae" / "config.json").is_file() else path
        weights = folder / "diffusion_pytorch_model.safetensors"
        if not (folder / "config.json").is_file() or not weights.is_file():
            raise ModelFileError(f"{owner}: {path} is not a diffusers VAE folder (config.json and "
                                 "diffusion_pytorch_model.safetensors); give such a folder or a VAE .safetensors file.")
        try:
            read_safetensors_header(weights)
        except ModelFileError as error:
            raise type(error)(f"{owner}: {error}") from None
        digest = tree_sha256((f.name, sha256_file(f, cache)) for f in (folder / "config.json", weights))
        return ResolvedVae(folder, "diffusers-folder", digest)
    if not path.is_file():
        raise ModelFileError(f"{owner}: {path} does not exist; fix the `vae` path.")
    try:
        model = open_model_file(path, allow_pickle, "set allow_pickle = true for the checkpoint that uses it")
    except ModelFileError as error:
        raise type(error)(f"{owner}: {error}") from None
    kind = detect_kind(model)
    if kind != "vae":
        raise ModelFileError(f"{owner}: {path.name} is a {kind} file, not a VAE (no encoder/decoder tensors); give "
                             "a VAE .safetensors file or a diffusers VAE folder.")
    return ResolvedVae(path, "single-file", sha256_file(path, cache), allow_pickle)


def _resolve_folder(spec: CheckpointSpec, path: Path, vae: ResolvedVae | None, cache: DigestCache | None
                    ) -> ResolvedCheckpoint:
    owner = f"checkpoint '{spec.name}'"
    if not (path / "model_index.json").is_file():
        raise ModelFileError(
            f"{owner}: folder {path} has no model_index.json, so it is not a diffusers pipeline folder; point "
            "`path` at the pipeline folder or at a single .safetensors file.")
    files = relative_files(path, FOLDER_FILES)
    for weights in (f for f in files if f.suffix == ".safetensors"):
        try:
            read_safetensors_header(weights)
        except ModelFileError as error:
            raise type(error)(f"{owner}: {error}") from None
    found_family, found_prediction, evidence = folder_family(path, owner)
    family = _check_declared_family(spec, found_family, evidence[0], path)
    prediction, source = _spec_prediction(spec) or (
        found_prediction, "the folder's scheduler_config.json prediction_type")
    digest = folder_digest(path, files, cache)
    warnings: list[str] = []
    stated = folder_zero_terminal_snr(path)
    ztsnr, ztsnr_source = decide_zero_terminal_snr(
        stated, "the folder's scheduler_config.json rescale_betas_zero_snr" if stated is not None else None, family,
        spec, warnings)
    detection = {
        "format": "diffusers-folder", "family": family,
        "family_source": f"detected, as the spec's arch = '{spec.arch}' declares" if spec.arch else "detected",
        "prediction": prediction, "prediction_source": source, "config": "the folder's own",
        "vae": {"path": str(vae.path), "sha256": vae.sha256} if vae else "the folder's", "evidence": evidence,
        "warnings": warnings, "notes": [], "zero_terminal_snr": ztsnr, "zero_terminal_snr_source": ztsnr_source,
    }
    variant = getattr(get_family(family), "folder_variant", lambda _folder: None)(path)
    detection["variant"] = variant
    return ResolvedCheckpoint(spec.name, spec.source, "diffusers-folder", path, digest, spec.config, family,
                              prediction, vae, spec.allow_pickle, "diffusers-folder", detection, ztsnr, variant)


def folder_zero_terminal_snr(path: Path) -> bool | None:
    scheduler = path / "scheduler" / "scheduler_config.json"
    if not scheduler.is_file():
        return None
    stated = json.loads(scheduler.read_text(encoding="utf-8")).get("rescale_betas_zero_snr")
    return bool(stated) if stated else None


def folder_family(path: Path, owner: str) -> tuple[Family, Prediction, list[str]]:
    from ckptbench.models.families import all_families

    index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    class_name = index.get("_class_name", "")
    scheduler = path / "scheduler" / "scheduler_config.json"
    stated = json.loads(scheduler.read_text(encoding="utf-8")).get("prediction_type") if scheduler.is_file() else None
    for family in all_families():
        evidence = family.folder_family_evidence(path, class_name)
        if evidence is not None:
            prediction: Prediction = "v" if stated == "v_prediction" else family.default_prediction
            return family.name, prediction, [evidence]
    known = sorted({family.pipeline_class for family in all_families()})
    raise ModelFileError(f"{owner}: {path} holds a {class_name or 'unknown'} pipeline; ckptbench loads "
                         f"{', '.join(known)} folders.")


def _hub_snapshot(repo_id: str | None) -> Path:
    from huggingface_hub import snapshot_download

    assert repo_id is not None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(repo_id))
    except Exception as error:
        raise WeightsUnavailableError(
            f"hub checkpoint '{repo_id}' is not in the local Hugging Face cache and could not be downloaded "
            f"({type(error).__name__}); run `hf download {repo_id}` where the hub is reachable, or give the "
            "local folder as `path`."
        ) from None
