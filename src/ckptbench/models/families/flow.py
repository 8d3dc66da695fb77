"""What the flow-matching transformer families (Flux.1, SD3.5) share: the ComfyUI/Civitai single-file layout.

Full checkpoints (as ComfyUI saves them and Civitai shares them) hold the transformer under
``model.diffusion_model.*``, the text encoders under ``text_encoders.{clip_l,clip_g,t5xxl}.transformer.*``
(transformers' own names below that) and the VAE under ``first_stage_model.*`` (or ``vae.*``).
Transformer-only files (the official releases, most fine-tunes) hold the transformer's tensors with or
without the prefix; their text encoders (``clip_l.safetensors``, ``clip_g.safetensors``,
``t5xxl_fp16.safetensors``) and VAE (``ae.safetensors``) come as separate files, named in the spec and
recognised by their tensors (``text_encoder_role``). Everything is normalised to the full layout first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ckptbench.models.detect import UNET, VAE
from ckptbench.models.families.base import FamilyMatch, ModelFamily, State

if TYPE_CHECKING:
    import torch

    from ckptbench.models.state_dict import ModelFile, TensorInfo

TextRole = Literal["clip_l", "clip_g", "t5xxl"]
TEXT_PREFIXES: dict[TextRole, str] = {"clip_l": "text_encoders.clip_l.transformer.",
                                      "clip_g": "text_encoders.clip_g.transformer.",
                                      "t5xxl": "text_encoders.t5xxl.transformer."}
ROLE_TITLES = {"clip_l": "CLIP-L", "clip_g": "OpenCLIP-bigG", "t5xxl": "T5-XXL"}
_T5_MARKER = "encoder.block.0.layer.0.SelfAttention.k.weight"
_CLIP_MARKER = "text_model.embeddings.token_embedding.weight"


RELEASED_CLIP_WIDTHS: dict[int, TextRole] = {768: "clip_l", 1280: "clip_g"}


def text_encoder_role(model: ModelFile, clip_widths: dict[int, TextRole] | None = None
                      ) -> tuple[TextRole | None, str]:
    """Which text encoder a separate file holds (by its tensors), with the key prefix it uses. CLIP-L and
    OpenCLIP-bigG differ in width (768, 1280 in the releases; ``clip_widths`` for other configs)."""
    widths = {**RELEASED_CLIP_WIDTHS, **(clip_widths or {})}
    t = model.tensors
    for role, prefix in TEXT_PREFIXES.items():
        if any(name.startswith(prefix) for name in t):
            return role, prefix
    for prefix in ("", "transformer.", "text_encoder."):
        if prefix + _T5_MARKER in t:
            return "t5xxl", prefix
        if (info := t.get(prefix + _CLIP_MARKER)) is not None and info.shape:
            return widths.get(info.shape[-1]), prefix
    return None, ""


def present_roles(model: ModelFile) -> tuple[TextRole, ...]:
    return tuple(role for role, prefix in TEXT_PREFIXES.items() if model.has_prefix(prefix))


def has_key(t: dict[str, TensorInfo], key: str) -> bool:
    return key in t or UNET + key in t


def key_info(t: dict[str, TensorInfo], key: str) -> TensorInfo | None:
    return t.get(UNET + key) or t.get(key)


@dataclass(frozen=True)
class FlowFamily(ModelFamily):
    """A flow-matching transformer family: ``marker`` names its transformer; ``text_roles`` its encoders."""

    marker: str = ""
    text_roles: tuple[TextRole, ...] = ()
    variants: tuple[str, ...] = ()
    sigma_table: int = 1000  # pseudo-timesteps of the "Simple" schedule's σ table (Forge, ComfyUI)
    # The transformer sizes every other tensor follows, for the header-only size check (``models.sizes``):
    # (tensor, axis, what, config key(s) whose product it must equal), and (block prefix, what, config key).
    size_tensors: tuple[tuple[str, int, str, tuple[str, ...]], ...] = ()
    size_blocks: tuple[tuple[str, str, str], ...] = ()

    def size_problem(self, model: ModelFile, config: Path, baked_vae: bool) -> str | None:
        from ckptbench.models.sizes import transformer_size_problem

        return transformer_size_problem(model, config, self.size_tensors, self.size_blocks)

    # --- sampling (generate/flow_sampling.py, generate/flow_conditioning.py) ---------------------------------
    def sigma(self, t: float, variant: str | None) -> float:
        """The noise level at time t ∈ (0, 1]: the family's time shift."""
        raise NotImplementedError

    def condition(self, pipeline: Any, parsed: Any) -> Any:
        """One parsed prompt's conditioning (``FlowConditioning``)."""
        raise NotImplementedError

    def predict_flow(self, transformer: Any, x: Any, sigma: float, sequence: Any, pooled: Any,
                     guidance: float | None) -> Any:
        """The transformer's flow prediction for latents ``x`` (B, C, h, w) at σ."""
        raise NotImplementedError

    def recognises(self, model: ModelFile) -> bool:
        return has_key(model.tensors, self.marker)

    def match_text_encoders(self, model: ModelFile) -> FamilyMatch | None:
        if not self.recognises(model):
            return None
        roles = present_roles(model)
        missing = [ROLE_TITLES[r] for r in self.text_roles if r not in roles]
        where = "model.diffusion_model.*" if model.has_prefix(UNET) else "no prefix: a transformer-only file"
        evidence = [f"{self.marker} ({where}) → {self.name}"]
        if roles:
            evidence.append("text encoders in the file: " + ", ".join(ROLE_TITLES[r] for r in roles))
        notes = () if not missing else (f"no {', '.join(missing)} in the file: give them as `text_encoders` in the "
                                         "spec",)
        return FamilyMatch(self.name, tuple(evidence), has_text_encoder=not missing, notes=notes,
                           variant=self.variant_of(model))

    def variant_of(self, model: ModelFile) -> str | None:
        return None

    def folder_variant(self, folder: Path) -> str | None:
        """The variant of a diffusers folder of this family, from its transformer config."""
        return None

    def clip_widths(self, config: Path) -> dict[int, TextRole]:
        """The CLIP widths of a config folder's text encoders, by role (tells CLIP-L from -G at any size)."""
        import json

        widths: dict[int, TextRole] = {}
        for component, role in (("text_encoder", "clip_l"), ("text_encoder_2", "clip_g")):
            if role in self.text_roles and (file := config / component / "config.json").is_file():
                widths[json.loads(file.read_text(encoding="utf-8")).get("hidden_size", 0)] = role
        return widths

    def config_dir(self, prediction: Any, variant: str | None = None) -> Path:
        from ckptbench.models.families.base import CONFIGS

        return CONFIGS / f"{self.config_name}-{variant or self.variants[0]}"

    def job_problem(self, job: Any) -> str | None:
        """What the flow path does not do (yet): sizes that are not multiples of 16 (also the hires fix's),
        textual-inversion embeddings, prompt editing and alternation — refused, never dropped."""
        from ckptbench.generate.base import target_size
        from ckptbench.prompt import scheduled_prompts

        settings = job.settings
        if settings.width % 16 or settings.height % 16:  # 8× VAE, then 2×2 patches (Flux packing, SD3 patch 2)
            return (f"{self.name} needs a width and height divisible by 16, not {settings.width}×{settings.height}; "
                    "change `width`/`height`.")
        if settings.hires is not None:
            width, height = target_size(settings.width, settings.height, settings.hires.scale)
            if width % 16 or height % 16:
                return (f"{self.name} needs the hires fix's size divisible by 16, not {width}×{height} "
                        f"({settings.width}×{settings.height} × {settings.hires.scale:g}); change `hires.scale`.")
        names = sorted(name for name, _ in job.embeddings)
        if names:  # the CLIP-only vectors would leave T5 without them
            return (f"textual-inversion embeddings ({', '.join(names)}) are not supported for {self.name} "
                    "checkpoints in ckptbench; remove them from the prompt.")
        for text, negative in ((job.prompt, False), (job.negative_prompt, True)):
            if len(scheduled_prompts(text, 1000, negative=negative)) > 1:
                return editing_refusal(text, self.name)
        return None

    def sampling_settings(self, settings: Any, distilled_cfg: float, variant: str | None = None
                          ) -> tuple[Any, str | None]:
        """Flow-matching Euler with the "Simple" schedule (Forge's and ComfyUI's defaults for these models); the
        spec's A1111 sampler applies to the other families. Clip skip does not apply."""
        from dataclasses import replace

        adapted = replace(settings, sampler="Euler", schedule="Simple", clip_skip=1)
        changed = [f"sampler '{settings.sampler}' → flow-matching Euler (Simple schedule)"] \
            if (settings.sampler, settings.schedule) != ("Euler", "Simple") else []
        if settings.clip_skip != 1:
            changed.append("clip skip ignored")
        return adapted, (f"{self.name}: " + ", ".join(changed) + " — as Forge and ComfyUI sample it") \
            if changed else None

    # --- loading -----------------------------------------------------------------------------------------
    def normalise_state(self, state: State, config: Path) -> State:
        """The full layout: a bare transformer gains ``model.diffusion_model.``, ``vae.*`` becomes
        ``first_stage_model.*``; stale ``position_ids`` buffers are dropped."""
        bare = not any(name.startswith(UNET) for name in state)
        out: State = {}
        for name in list(state):
            tensor = state.pop(name)  # moved, not copied: the file's tensors are held once
            if name.endswith("position_ids"):
                continue
            if name.startswith("vae."):
                name = VAE + name.removeprefix("vae.")
            elif bare and not name.startswith((VAE, "text_encoders.")):
                name = UNET + name
            out[name] = tensor
        return out

    def vae_state(self, state: State) -> State:
        return {name: state.pop(name) for name in [n for n in state if n.startswith(VAE)]}

    def build_text_encoder(self, state: State, role: TextRole, model_class: str, component: str, config: Path,
                           dtype: torch.dtype) -> Any:
        from ckptbench.models.components import build_clip_encoder, build_t5_encoder

        prefix = TEXT_PREFIXES[role]
        sub_state = {name: state.pop(name) for name in [n for n in state if n.startswith(prefix)]}
        if not sub_state:
            raise_missing(role)
        if role == "t5xxl":
            return build_t5_encoder(sub_state, config, component, dtype)
        return build_clip_encoder(sub_state, prefix, model_class, config, component, dtype)

    def denoiser(self, pipeline: Any) -> Any:
        return pipeline.transformer


def raise_missing(role: TextRole) -> None:
    from ckptbench.errors import ModelFileError

    raise ModelFileError(f"no {ROLE_TITLES[role]} text encoder tensors ({TEXT_PREFIXES[role]}*) in the file or in "
                         "the spec's `text_encoders`")


def editing_refusal(prompt: str, family: str) -> str:
    return (f"prompt editing or alternation ([a:b:n], [a|b]) in {prompt[:80]!r} is not supported for {family} "
            "checkpoints in ckptbench; write the prompt without it for this model.")
