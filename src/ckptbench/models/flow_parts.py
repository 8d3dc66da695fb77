"""The separate parts a Flux or SD3.5 checkpoint may need: text-encoder files and the T5 tokenizer.

Text-encoder files (``clip_l.safetensors``, ``clip_g.safetensors``, ``t5xxl_fp16.safetensors``, …) are
recognised by their tensors, never by their names, and must each fill a role the family has. The T5
tokenizer (a SentencePiece vocabulary no package ships) is the spec's ``t5_tokenizer`` or is looked up in
the local Hugging Face cache (the tokenizer folders of the FLUX.1 and SD3.5 repositories, google/t5-v1_1-xxl).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ckptbench.errors import ModelFileError
from ckptbench.hashing import DigestCache, sha256_file, tree_sha256
from ckptbench.models.families.flow import ROLE_TITLES, FlowFamily, TextRole, present_roles, text_encoder_role
from ckptbench.models.state_dict import ModelFile, open_model_file
from ckptbench.spec import CheckpointSpec

# (hub repo, subfolder) of the T5 tokenizers in the releases, tried in the local cache in this order.
HUB_T5_TOKENIZERS = (("black-forest-labs/FLUX.1-dev", "tokenizer_2"),
                     ("black-forest-labs/FLUX.1-schnell", "tokenizer_2"),
                     ("stabilityai/stable-diffusion-3.5-large", "tokenizer_3"),
                     ("stabilityai/stable-diffusion-3.5-medium", "tokenizer_3"), ("google/t5-v1_1-xxl", ""))
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "spiece.model")


@dataclass(frozen=True)
class FlowParts:
    text_encoders: tuple[ResolvedTextEncoder, ...] = ()
    tokenizer: ResolvedTokenizer | None = None

    def record(self) -> dict[str, object]:
        if self.tokenizer is None:
            return {}
        return {"text_encoders": {p.role: {"path": str(p.path), "sha256": p.sha256} for p in self.text_encoders},
                "t5_tokenizer": {"path": str(self.tokenizer.path), "source": self.tokenizer.source}}


def flow_parts(spec: CheckpointSpec, model: ModelFile, family: FlowFamily, cache: DigestCache | None) -> FlowParts:
    """The text-encoder files and T5 tokenizer of a Flux/SD3.5 checkpoint; every encoder the family needs must be
    in the file or among the spec's ``text_encoders`` (which replace the file's)."""
    config = spec.config or family.config_dir("flow", family.variant_of(model))
    text_encoders = resolve_text_encoders(spec, family.text_roles, cache, family.clip_widths(config))
    provided = set(present_roles(model)) | {part.role for part in text_encoders}
    missing = [ROLE_TITLES[role] for role in family.text_roles if role not in provided]
    if missing:
        raise ModelFileError(f"checkpoint '{spec.name}': {model.path.name} holds no {' and no '.join(missing)} text "
                             f"encoder; add the file{'s' if len(missing) > 1 else ''} (e.g. clip_l.safetensors, "
                             "t5xxl_fp16.safetensors) to `text_encoders` for this checkpoint.")
    return FlowParts(text_encoders, resolve_t5_tokenizer(spec, cache))


@dataclass(frozen=True)
class ResolvedTextEncoder:
    role: TextRole
    path: Path
    sha256: str
    key_prefix: str  # the prefix its tensors carry in the file ('' for transformers' plain names)
    allow_pickle: bool = False


@dataclass(frozen=True)
class ResolvedTokenizer:
    path: Path  # a folder with tokenizer.json (and its configs)
    digest: str
    source: str


def resolve_text_encoders(spec: CheckpointSpec, family_roles: tuple[TextRole, ...], cache: DigestCache | None,
                          clip_widths: dict[int, TextRole] | None = None) -> tuple[ResolvedTextEncoder, ...]:
    owner = f"checkpoint '{spec.name}'"
    resolved: dict[TextRole, ResolvedTextEncoder] = {}
    for path in spec.text_encoders:
        if not path.is_file():
            raise ModelFileError(f"{owner}: text encoder {path} does not exist; fix `text_encoders`.")
        try:
            model = open_model_file(path, spec.allow_pickle, f"set allow_pickle = true for {owner}")
        except ModelFileError as error:
            raise type(error)(f"{owner}: text encoder: {error}") from None
        role, prefix = text_encoder_role(model, clip_widths)
        if role is None:
            raise ModelFileError(f"{owner}: text_encoders: {path.name} is not a CLIP-L, OpenCLIP-bigG or T5-XXL "
                                 "text encoder (no text_model.* or encoder.block.* tensors); remove it from "
                                 "`text_encoders`.")
        if role not in family_roles:
            raise ModelFileError(f"{owner}: text_encoders: {path.name} is a {ROLE_TITLES[role]} encoder, which this "
                                 f"model does not use (it takes {', '.join(ROLE_TITLES[r] for r in family_roles)}); "
                                 "remove it from `text_encoders`.")
        if role in resolved:
            raise ModelFileError(f"{owner}: text_encoders: {resolved[role].path.name} and {path.name} are both "
                                 f"{ROLE_TITLES[role]} encoders; keep one.")
        resolved[role] = ResolvedTextEncoder(role, path, sha256_file(path, cache), prefix, spec.allow_pickle)
    return tuple(resolved[role] for role in family_roles if role in resolved)


def resolve_t5_tokenizer(spec: CheckpointSpec, cache: DigestCache | None) -> ResolvedTokenizer:
    owner = f"checkpoint '{spec.name}'"
    if spec.t5_tokenizer is not None:
        folder = spec.t5_tokenizer.parent if spec.t5_tokenizer.is_file() else spec.t5_tokenizer
        if not (folder / "tokenizer.json").is_file():
            raise ModelFileError(f"{owner}: t5_tokenizer: {spec.t5_tokenizer} holds no tokenizer.json; give the "
                                 "tokenizer_2 folder of FLUX.1 (or tokenizer_3 of SD3.5), or its tokenizer.json.")
        return ResolvedTokenizer(folder, _folder_digest(folder, cache), f"spec: {spec.t5_tokenizer}")
    found = _cached_hub_tokenizer()
    if found is None:
        repos = ", ".join(repo for repo, _ in HUB_T5_TOKENIZERS)
        raise ModelFileError(f"{owner}: a Flux/SD3.5 model needs the T5 tokenizer, which is neither set "
                             f"(`t5_tokenizer`) nor in the local Hugging Face cache ({repos}); set `t5_tokenizer` to a "
                             "folder with its tokenizer.json.")
    folder, source = found
    return ResolvedTokenizer(folder, _folder_digest(folder, cache), source)


def _folder_digest(folder: Path, cache: DigestCache | None) -> str:
    files = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
    return tree_sha256((f.name, sha256_file(f, cache)) for f in files)


def _cached_hub_tokenizer() -> tuple[Path, str] | None:
    from huggingface_hub import snapshot_download

    for repo, subfolder in HUB_T5_TOKENIZERS:
        pattern = f"{subfolder}/*" if subfolder else "*.json"
        try:
            root = Path(snapshot_download(repo, local_files_only=True, allow_patterns=[pattern]))
        except Exception:
            continue
        folder = root / subfolder if subfolder else root
        if (folder / "tokenizer.json").is_file():
            return folder, f"hub cache: {repo}/{subfolder}".rstrip("/")
    return None


def load_t5_tokenizer(tokenizer: ResolvedTokenizer) -> object:
    from transformers import T5TokenizerFast

    return T5TokenizerFast.from_pretrained(str(tokenizer.path), local_files_only=True)
