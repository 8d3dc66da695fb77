"""What a model family declares: how its files are recognised, configured, loaded, sampled and sized.

Every family (SD1.x, SD2.x, SDXL, …) is one module that defines a ``ModelFamily`` and is registered in
``ckptbench.models.families`` (as open_clip and timm register models). The rest of ckptbench asks the
registry instead of testing family names. Family modules import torch and diffusers only inside the
methods that load models, so detection and ``inspect`` stay light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

    from ckptbench.models.state_dict import ModelFile

Prediction = Literal["epsilon", "v", "flow"]
CONFIGS = Path(__file__).resolve().parent.parent / "configs"
State = dict[str, "torch.Tensor"]


@dataclass(frozen=True)
class FamilyMatch:
    """A family's claim on a file: evidence lines, what the file holds, and why it cannot be used (if so)."""

    family: str
    evidence: tuple[str, ...]
    has_text_encoder: bool = True
    text_width: int | None = None  # the conditioning width the text encoders give the denoiser
    problem: str | None = None
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    variant: str | None = None  # e.g. Flux 'dev'/'schnell', SD3.5 'large'/'medium': picks the bundled config


@dataclass(frozen=True)
class ModelFamily:
    """One family; subclasses override the methods whose behaviour differs.

    ``components`` maps an original-layout key prefix to the diffusers component it fills (what
    ``inspect`` counts parameters by). ``bytes_per_image_512`` is the peak activation memory of one
    512×512 image in half precision with guidance and the VAE decode (the automatic batch size and the
    dry run's memory check scale it by pixels and dtype width).
    """

    name: str
    title: str
    config_name: str
    pipeline_class: str  # the diffusers pipeline class its models load into
    components: dict[str, str]
    bytes_per_image_512: float
    predictions: tuple[Prediction, ...] = ("epsilon",)
    example: str = ""  # one spec example for the README's model section
    aliases: tuple[str, ...] = field(default=())

    # --- detection -------------------------------------------------------------------------------------
    def recognises(self, model: ModelFile) -> bool:
        """Whether the file's tensors are this family's denoiser in a layout without the LDM prefix."""
        return False

    def match_text_encoders(self, model: ModelFile) -> FamilyMatch | None:
        """The family as the file's text encoders (or other decisive tensors) name it; None: not this one."""
        return None

    def match_denoiser(self, model: ModelFile) -> FamilyMatch | None:
        """The family from the denoiser alone (a file without text encoders); None: not this one."""
        return None

    def check(self, model: ModelFile, match: FamilyMatch) -> FamilyMatch:
        """Further checks on a file this family claimed (consistency warnings, unsupported variants)."""
        return match

    # --- prediction and configuration -------------------------------------------------------------------
    @property
    def default_prediction(self) -> Prediction:
        return self.predictions[0]

    def config_dir(self, prediction: Prediction, variant: str | None = None) -> Path:
        """The bundled diffusers config folder used to build a single file of this family."""
        return CONFIGS / self.config_name

    def size_problem(self, model: ModelFile, config: Path, baked_vae: bool) -> str | None:
        """How the file's tensor sizes differ from ``config``, read from the header alone (``models.sizes``);
        None: they fit, or the family cannot tell before loading."""
        return None

    def undecided_prediction(self, model: ModelFile, config: Path, allow_pickle: bool) -> tuple[Prediction, str]:
        """The prediction type when neither the spec, the file's markers nor the config state one."""
        return self.default_prediction, f"no prediction marker; {self.name} defaults to {self.default_prediction}"

    def folder_family_evidence(self, folder: Path, class_name: str) -> str | None:
        """Evidence that a diffusers folder whose model_index names ``class_name`` is this family."""
        return f"model_index.json _class_name {class_name} → {self.name}" if class_name == self.pipeline_class \
            else None

    def owns_pipeline(self, pipeline: Any) -> bool:
        return type(pipeline).__name__ == self.pipeline_class

    def job_problem(self, job: Any) -> str | None:
        """Why this family cannot make ``job``'s image (an ``ImageJob``), in one sentence; None when it can.
        Asked at planning (so a dry run and ``validate`` report it) and again before generating."""
        return None

    def sampling_settings(self, settings: Any, distilled_cfg: float, variant: str | None = None
                          ) -> tuple[Any, str | None]:
        """The spec's sampling settings as this family samples them, and a note when they were adapted."""
        return settings, None

    # --- loading -----------------------------------------------------------------------------------------
    def normalise_state(self, state: State, config: Path) -> State:
        """Rename and drop tensors so that diffusers' converters see the layout they expect."""
        return state

    def build_modules(self, state: State, config: Path, dtype: torch.dtype) -> dict[str, Any]:
        """The text encoder(s) and the denoiser from an original-layout state dict."""
        raise NotImplementedError

    def vae_state(self, state: State) -> State:
        """The baked VAE's tensors of an original-layout state dict."""
        raise NotImplementedError

    def assemble(self, modules: dict[str, Any]) -> Any:
        """The diffusers pipeline of these modules (text encoders, denoiser, VAE, scheduler)."""
        raise NotImplementedError

    def load_folder(self, path: Path, options: dict[str, Any]) -> Any:
        """A diffusers pipeline folder of this family."""
        raise NotImplementedError

    def denoiser(self, pipeline: Any) -> Any:
        """The pipeline's denoising network (UNet or transformer)."""
        return pipeline.unet

    def decodes_in_fp32(self, pipeline: Any) -> bool:
        """Whether the VAE decode starts in fp32 (the VAE asks for it in half precision)."""
        return False
