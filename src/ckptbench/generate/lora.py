"""LoRAs: found by name in the spec's folders, read safely, applied with diffusers/peft, checked that they matched.

A LoRA that loads "fine" but names no layer of the model changes nothing, silently; so every LoRA is
counted after loading: the layers that received its weights against the layers its file names. None is
an error, part is a warning recorded with the run. Kohya files with LDM block names
(``lora_unet_input_blocks_1_1_…``) are mapped by diffusers' own converter, which needs the UNet config;
the SD1/SD2 loader does not pass it (the ``NoMatchingPeftModuleError`` users meet), so we do.

Loaded LoRAs stay on the pipeline as named peft adapters for all the cases of one checkpoint: a batch
activates its own set with its weights (``set_adapters``, text-encoder and UNet multipliers apart) and a
batch without LoRAs disables them all, which runs the base layers alone, bit for bit as before. Files with
LyCORIS parts (LoHa, LoKr, Tucker cores, ``dora_scale``), which diffusers cannot load, are merged into the
weights instead (``ckptbench.lycoris``), with the same counting. ``close`` unloads both kinds.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import logging
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ckptbench.errors import CkptbenchError, ModelFileError
from ckptbench.generate.base import LoraUse
from ckptbench.hashing import DigestCache, addnet_sha256, sha256_file
from ckptbench.lycoris.deltas import delta_shape
from ckptbench.lycoris.keys import NetworkModule, UnsupportedNetworkError, needs_weight_patching, read_modules
from ckptbench.lycoris.patcher import ActiveNetwork, WeightPatcher
from ckptbench.lycoris.targets import KOHYA_PREFIXES, Target, match_modules, pipeline_targets
from ckptbench.models.safety import read_safetensors_header, restricted_torch_load
from ckptbench.prompt import LoraTag, extract_lora_tags

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".ckpt", ".bin", ".pth")
# The keys that mark one adapted layer: kohya (lora_down), peft (lora_A), old diffusers attention processors.
_DOWN_SUFFIXES = ("lora_down.weight", "lora_A.weight", "lora.down.weight")
_UP_SUFFIXES = ("lora_up.weight", "lora_B.weight", "lora.up.weight")
_FAMILY_BY_CROSS_ATTENTION = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL"}


class LoraError(CkptbenchError):
    """A LoRA could not be found, read or applied; the message names the file and the checkpoint."""


class LoraNotFoundError(LoraError):
    """No file in ``lora_dirs`` has the LoRA's name as its stem (other ways to find it may still work)."""

    def __init__(self, name: str, folders: str, hint: str) -> None:
        self.name, self.folders, self.hint = name, folders, hint
        super().__init__(f"LoRA '{name}' was not found in lora_dirs ({folders}){hint}; put {name}.safetensors in "
                         "one of them or fix the name.")


@dataclass
class LoraLibrary:
    """Resolves LoRA names (file stems) in ``[generation] lora_dirs`` to files hashed by content."""

    dirs: tuple[Path, ...]
    default_weight: float = 0.8
    allow_pickle: bool = False
    cache: DigestCache | None = None
    _index: dict[str, list[Path]] | None = field(default=None, repr=False)

    def loras_for(self, prompt: str, suite_loras: Sequence[LoraTag] = ()) -> tuple[LoraUse, ...]:
        """The LoRAs one case applies: the prompt's ``<lora:…>`` tags and the suite's, one entry per file."""
        _, tags = extract_lora_tags(prompt)
        return combine_loras(self.resolve(tag) for tag in (*tags, *suite_loras))

    def resolve(self, tag: LoraTag) -> LoraUse:
        return self.use(tag, self.find(tag.name))

    def use(self, tag: LoraTag, path: Path) -> LoraUse:
        """``tag`` applied from the file ``path``: its weights (the default where the tag gives none) and hashes."""
        weight = self.default_weight if tag.weight is None else tag.weight
        return LoraUse(sha256_file(path, self.cache), weight, tag.name, path, tag.unet_weight, tag.dyn or 0,
                       lora_short_hash(path, self.cache))

    def find(self, name: str) -> Path:
        if not self.dirs:
            raise LoraError(f"LoRA '{name}' is named but [generation] lora_dirs is empty; add the folder that holds "
                            f"{name}.safetensors to lora_dirs.")
        index = self._build_index()
        found = index.get(name, [])
        safe = [path for path in found if path.suffix.lower() in SAFE_SUFFIXES]
        pickled = [path for path in found if path.suffix.lower() in PICKLE_SUFFIXES]
        if len(safe) > 1 or (not safe and len(pickled) > 1):
            listing = ", ".join(str(path) for path in (safe or pickled))
            raise LoraError(f"LoRA name '{name}' is ambiguous: {listing}; rename or remove all but one of them.")
        if safe:
            return safe[0]
        if pickled:
            if not self.allow_pickle:
                raise LoraError(
                    f"LoRA '{name}' is only available as {pickled[0]}, a pickle file that can run code when loaded; "
                    "convert it to .safetensors, or set [generation] allow_pickle_loras = true to load it with "
                    "torch.load(weights_only=True).")
            return pickled[0]
        close = difflib.get_close_matches(name, list(index), n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        folders = ", ".join(str(folder) for folder in self.dirs)
        raise LoraNotFoundError(name, folders, hint)

    def _build_index(self) -> dict[str, list[Path]]:
        if self._index is None:
            index: dict[str, list[Path]] = {}
            for folder in self.dirs:
                for path in sorted(folder.rglob("*")):
                    if path.is_file() and path.suffix.lower() in SAFE_SUFFIXES + PICKLE_SUFFIXES:
                        index.setdefault(path.stem, []).append(path)
            self._index = index
        return self._index


def combine_loras(uses: Iterable[LoraUse]) -> tuple[LoraUse, ...]:
    """One entry per file, weights of repeats added (as applying a LoRA twice does), in a canonical order."""
    by_file: dict[str, LoraUse] = {}
    for use in uses:
        first = by_file.get(use.sha256)
        if first is None:
            by_file[use.sha256] = use
            continue
        if first.dyn != use.dyn:
            raise LoraError(f"LoRA {use.path} is applied twice with different dyn values ({first.dyn}, {use.dyn}); "
                            "name it once, or with one dyn.")
        by_file[use.sha256] = LoraUse(first.sha256, first.weight + use.weight, first.name, first.path,
                                      first.unet_weight + use.unet_weight, first.dyn, first.short_hash)
    return tuple(sorted(by_file.values()))


def lora_short_hash(path: Path, cache: DigestCache | None = None) -> str:
    """What A1111 (``network.py``) writes for a LoRA in ``Lora hashes`` and Civitai matches: the file's
    ``sshs_model_hash`` metadata when it has one, else the kohya addnet hash (sha256 of the tensor data after
    the safetensors header) or, for other formats, the file's sha256; the first 12 characters.

    A metadata value that is not a hex digest is not trusted (A1111 takes any text): the addnet hash is used.
    """
    if path.suffix.lower() not in SAFE_SUFFIXES:
        return sha256_file(path, cache)[:12]
    stat = path.stat()
    stated = _stated_hash(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    return stated[:12] if stated else addnet_sha256(path, cache)[:12]


@functools.lru_cache(maxsize=1024)
def _stated_hash(path: str, size: int, mtime_ns: int) -> str:
    """A safetensors file's ``sshs_model_hash`` when it is a hex digest of 12 digits or more, else ''."""
    try:
        stated = read_safetensors_header(Path(path)).metadata.get("sshs_model_hash", "")
    except ModelFileError:
        return ""
    return stated if len(stated) >= 12 and all(char in "0123456789abcdefABCDEF" for char in stated) else ""


def read_lora_file(path: Path, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """A LoRA's tensors: safetensors, or a pickle file only when allowed and only with ``weights_only=True``."""
    suffix = path.suffix.lower()
    try:
        if suffix in SAFE_SUFFIXES:
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        if suffix in PICKLE_SUFFIXES and allow_pickle:
            try:
                loaded = restricted_torch_load(path, f"LoRA file {path}")
            except ModelFileError as error:
                raise LoraError(str(error)) from None
            state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise LoraError(f"LoRA file {path} does not hold a flat dictionary of tensors; it is not a LoRA.")
            return dict(state)
    except LoraError:
        raise
    except Exception as error:
        raise LoraError(f"LoRA file {path} could not be read ({type(error).__name__}: "
                        f"{_first_line(error)}); replace it with a complete .safetensors copy.") from None
    raise LoraError(f"LoRA file {path} is not a .safetensors file; convert it, or allow pickle LoRAs in the spec.")


def lora_layer_count(state: dict[str, torch.Tensor]) -> int:
    """How many model layers a LoRA file adapts (one down/A matrix each)."""
    return sum(1 for key in state if key.endswith(_DOWN_SUFFIXES))


def _cross_attention_widths(state: dict[str, torch.Tensor]) -> set[int]:
    """Input widths of the LoRA's cross-attention key projections: the text embedding width it was made for."""
    if needs_weight_patching(state):
        shapes = [delta_shape(module) for module in read_modules(state) if "attn2_to_k" in module.name]
        return {shape[1] for shape in shapes if len(shape) == 2}
    widths = set()
    for key, tensor in state.items():
        flat = key.replace(".", "_")
        if "attn2_to_k" in flat and flat.endswith(("lora_down_weight", "lora_A_weight")) and tensor.ndim >= 2:
            widths.add(int(tensor.shape[1]))
    return widths


def _family(width: int) -> str:
    family = _FAMILY_BY_CROSS_ATTENTION.get(width)
    return f"{family} (cross-attention width {width})" if family else f"a model with cross-attention width {width}"


def check_architecture(state: dict[str, torch.Tensor], pipeline: Any, lora: LoraUse, checkpoint: str) -> None:
    """Refuse a LoRA made for another family (e.g. SDXL on SD1.5) before peft meets mismatched shapes."""
    widths = _cross_attention_widths(state)
    unet = getattr(pipeline, "unet", None)
    if unet is None:  # Flux, SD3.5: a UNet LoRA's cross-attention layers cannot be in their transformer
        if widths:
            raise LoraError(f"LoRA {lora.path} was made for {_family(max(widths))}, a UNet model, but checkpoint "
                            f"'{checkpoint}' is a transformer model; use a LoRA made for its architecture.")
        return
    model_width = unet.config.cross_attention_dim
    has_second_encoder = any(key.startswith(("lora_te2_", "text_encoder_2.")) for key in state)
    if has_second_encoder and getattr(pipeline, "text_encoder_2", None) is None:
        widths = widths or {2048}
    if isinstance(model_width, int) and widths and widths != {model_width}:
        raise LoraError(
            f"LoRA {lora.path} was made for {_family(max(widths))} but checkpoint '{checkpoint}' is "
            f"{_family(model_width)}; use a LoRA made for the checkpoint's architecture.")


@contextlib.contextmanager
def _quiet_loaders() -> Iterator[None]:
    """diffusers and transformers narrate adapter loading (and report LoRA keys as 'missing'); we count instead."""
    loggers = [logging.getLogger(name) for name in ("diffusers", "transformers", "peft")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # peft: "several adapters in the model" is our intent
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:300]


def adapter_name(lora: LoraUse) -> str:
    """One adapter per file and rank count (``dyn`` makes a different LoRA of the same file)."""
    return f"lora_{lora.sha256[:16]}" + (f"_dyn{lora.dyn}" if lora.dyn else "")


def keep_ranks(state: dict[str, torch.Tensor], dyn: int) -> dict[str, torch.Tensor]:
    """A plain LoRA with only its first ``dyn`` ranks and the scale A1111 gives it: alpha over the full rank
    (``rebuild_conventional`` slices the factors but ``calc_scale`` keeps the file's rank)."""
    kept: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key.endswith(_DOWN_SUFFIXES):
            kept[key] = tensor[:dyn]
        elif key.endswith(_UP_SUFFIXES):
            kept[key] = tensor[:, :dyn]
        elif key.endswith(".alpha") and (down := state.get(key.removesuffix("alpha") + "lora_down.weight")) is not None:
            kept[key] = tensor * min(dyn, down.shape[0]) / down.shape[0]
        else:
            kept[key] = tensor
    return kept


@dataclass(frozen=True)
class _Loaded:
    warnings: tuple[str, ...]
    network: tuple[tuple[NetworkModule, Target], ...] | None = None  # None: a diffusers/peft adapter


class LoraApplier:
    """Applies LoRA sets to one loaded pipeline; loads each file once and keeps up to ``max_loaded`` of them.

    Plain LoRA files become diffusers/peft adapters; files with LyCORIS parts (LoHa, LoKr, Tucker cores,
    ``dora_scale``) are merged into the layers' weights by ``lycoris.patcher``, as A1111 applies them.
    """

    def __init__(self, pipeline: Any, checkpoint: str, allow_pickle: bool = False, max_loaded: int = 8) -> None:
        self.pipeline = pipeline
        self.checkpoint = checkpoint
        self.allow_pickle = allow_pickle
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()  # by adapter name, oldest first
        self._failed: dict[str, LoraError] = {}
        self._patcher = WeightPatcher()
        self._targets: dict[str, Target] | None = None

    def activate(self, loras: Sequence[LoraUse]) -> tuple[str, ...]:
        """Make exactly ``loras`` (with their weights) act on the next calls; return their warnings."""
        names = [adapter_name(lora) for lora in loras]
        for lora, name in zip(loras, names, strict=True):
            if name in self._failed:
                raise self._failed[name]
            if name in self._loaded:
                self._loaded.move_to_end(name)
                continue
            self._evict(keep=set(names))
            try:
                self._loaded[name] = self._load(lora, name)
            except LoraError as error:
                self._failed[name] = error  # not read and tried again for every case that names it
                with contextlib.suppress(Exception):
                    self.pipeline.delete_adapters(name)
                raise
        loaded = [(lora, name, self._loaded[name]) for lora, name in zip(loras, names, strict=True)]
        try:
            self._patcher.apply([ActiveNetwork(name, entry.network, lora.weight, lora.unet_weight, lora.dyn)
                                 for lora, name, entry in loaded if entry.network is not None])
        except CkptbenchError as error:
            raise LoraError(f"LoRA set {', '.join(str(lora.path) for lora in loras)} could not be applied to "
                            f"checkpoint '{self.checkpoint}': {error}") from None
        adapters = [(lora, name) for lora, name, entry in loaded if entry.network is None]
        if adapters:
            present = self.pipeline.get_list_adapters()
            self.pipeline.enable_lora()
            self.pipeline.set_adapters([name for _, name in adapters],
                                       [_component_weights(lora, name, present) for lora, name in adapters])
        elif any(entry.network is None for entry in self._loaded.values()):
            self.pipeline.disable_lora()
        return tuple(warning for _, _, entry in loaded for warning in entry.warnings)

    def close(self) -> None:
        """Remove every LoRA: the pipeline's layers are the base layers again, bit for bit."""
        self._patcher.restore()
        if any(entry.network is None for entry in self._loaded.values()):
            self.pipeline.unload_lora_weights()
        self._loaded.clear()

    def _evict(self, keep: set[str]) -> None:
        while len(self._loaded) >= self.max_loaded:
            oldest = next((name for name in self._loaded if name not in keep), None)
            if oldest is None:
                return
            if self._loaded[oldest].network is None:
                self.pipeline.delete_adapters(oldest)
            del self._loaded[oldest]

    def _load(self, lora: LoraUse, name: str) -> _Loaded:
        state = read_lora_file(lora.path, self.allow_pickle)
        if needs_weight_patching(state):
            return self._load_network(state, lora)
        expected = lora_layer_count(state)
        if expected == 0:
            raise LoraError(f"LoRA file {lora.path} holds no LoRA layers (no lora_down/lora_up, lora_A/lora_B, LoHa "
                            "or LoKr tensors); use a LoRA or LyCORIS file.")
        check_architecture(state, self.pipeline, lora, self.checkpoint)
        from diffusers.loaders import StableDiffusionXLLoraLoaderMixin

        # The SDXL loader passes the UNet config to the kohya converter itself; the SD1/SD2 loader does not.
        unet = getattr(self.pipeline, "unet", None)  # Flux and SD3.5 loaders convert without it
        extra = {} if unet is None or isinstance(self.pipeline, StableDiffusionXLLoraLoaderMixin) else {
            "unet_config": unet.config}
        try:
            with _quiet_loaders():
                self.pipeline.load_lora_weights(keep_ranks(state, lora.dyn) if lora.dyn else state,
                                                adapter_name=name, **extra)
        except Exception as error:
            if "not found in the base model" in str(error) or type(error).__name__ == "NoMatchingPeftModuleError":
                raise self._no_match(lora, expected) from None
            if all(key.startswith(KOHYA_PREFIXES) for key in state):
                # diffusers' converter cannot map every kohya file (an SD1.x LoCon in original-UNet names makes
                # its block mapper fail); A1111 maps the names from the model itself, and so does the merge path.
                with contextlib.suppress(Exception):
                    self.pipeline.delete_adapters(name)
                return self._load_network(state, lora)
            raise LoraError(f"LoRA {lora.path} could not be applied to checkpoint '{self.checkpoint}' "
                            f"({type(error).__name__}: {_first_line(error)}); check that it is a LoRA for this "
                            "checkpoint's architecture.") from None
        return _Loaded(self._partial_warning(lora, self._count_loaded(name), expected))

    def _load_network(self, state: dict[str, torch.Tensor], lora: LoraUse) -> _Loaded:
        """A LyCORIS file: every module read, checked against its layer and kept for merging."""
        try:
            modules = read_modules(state)
            check_architecture(state, self.pipeline, lora, self.checkpoint)
            if self._targets is None:
                self._targets = pipeline_targets(self.pipeline)
            found = match_modules(modules, self._targets)
        except UnsupportedNetworkError as error:
            raise LoraError(f"LoRA {lora.path} cannot be applied to checkpoint '{self.checkpoint}': {error}") from None
        if not found.matched and found.no_effect:
            raise LoraError(f"LoRA {lora.path} has no effect: every one of its {len(found.no_effect)} layers in "
                            f"checkpoint '{self.checkpoint}' has an all-zero factor; it is an untrained or damaged "
                            "file.")
        return _Loaded(self._partial_warning(lora, len(found.matched), len(modules)), found.matched)

    def _partial_warning(self, lora: LoraUse, matched: int, expected: int) -> tuple[str, ...]:
        if matched == 0:
            raise self._no_match(lora, expected)
        if matched < expected:
            return (f"LoRA {lora.path} matched only {matched} of its {expected} layers in checkpoint "
                    f"'{self.checkpoint}'; the other {expected - matched} have no effect.",)
        return ()

    def _no_match(self, lora: LoraUse, expected: int) -> LoraError:
        return LoraError(f"LoRA {lora.path} matches no layer of checkpoint '{self.checkpoint}' (none of its "
                         f"{expected} layers was found); check that it is a LoRA for this checkpoint's architecture.")

    def _count_loaded(self, name: str) -> int:
        """Layers that hold this adapter with weights from the file (peft starts lora_B at zero: no effect)."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        count = 0
        for component in self.pipeline._lora_loadable_modules:
            module = getattr(self.pipeline, component, None)
            if not isinstance(module, torch.nn.Module):
                continue
            for layer in module.modules():
                if isinstance(layer, BaseTunerLayer) and name in getattr(layer, "lora_B", {}):
                    up = layer.lora_B[name].weight
                    if bool(up.detach().abs().sum() > 0):
                        count += 1
        return count


def _component_weights(lora: LoraUse, name: str, present: dict[str, list[str]]) -> dict[str, float]:
    """A1111's two multipliers per pipeline component: text encoders take the first, the denoiser the second
    (only the components the adapter has layers in, which diffusers requires)."""
    return {component: lora.weight if component.startswith("text_encoder") else lora.unet_weight
            for component, adapters in present.items() if name in adapters}
