"""ckptbench's own suite file format (TOML), read strictly and written back. See docs/suites.md.

    [suite]
    name = "styles"
    kind = "style"                     # quality | style | lora
    references = "refs"                # root of relative reference paths (default: this file's folder)

    [[cases]]
    id = "anime"                       # default: the case's position, 000, 001, …
    prompt = "(anime:1.3), 1girl, white background, portrait"
    style = "Anime"
    references = ["Anime"]             # image files, or folders whose images are all used
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ckptbench.atomic import atomic_write_text
from ckptbench.errors import SuiteError
from ckptbench.prompt import LoraTag
from ckptbench.spec import SuiteKind
from ckptbench.spec_errors import describe_validation_error
from ckptbench.suites.case import Case
from ckptbench.suites.images import image_files
from ckptbench.textfiles import read_toml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraEntry(_Strict):
    name: str = Field(description="LoRA name: file stem in a LoRA folder, its alias, or a key of `lora_files`.")
    weight: float | None = Field(default=None, description="Strength; default: the spec's default LoRA weight.")


class CaseEntry(_Strict):
    id: str | None = Field(default=None, description="Stable id; default: the case's position (000, 001, …).")
    prompt: str
    negative_prompt: str | None = None
    style: str | None = None
    label: str | None = None
    references: tuple[str, ...] = Field(default=(), description="Image files or folders of reference images.")
    loras: tuple[LoraEntry, ...] = ()
    lora_files: dict[str, str] = Field(default_factory=dict)
    showcase_models: tuple[str, ...] = Field(default=(), description="Checkpoints the references were made with.")
    tags: tuple[str, ...] = ()

    @field_validator("loras", mode="before")
    @classmethod
    def _names_as_entries(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value


class SuiteHeader(_Strict):
    name: str | None = None
    kind: SuiteKind = "quality"
    description: str | None = None
    negative_prompt: str | None = None
    references: str | None = Field(default=None, description="Root of relative reference paths.")
    lora_files: dict[str, str] = Field(default_factory=dict)


class SuiteFile(_Strict):
    suite: SuiteHeader = SuiteHeader()
    cases: tuple[CaseEntry, ...] = Field(min_length=1)


def read_suite_file(path: Path) -> SuiteFile:
    path = Path(path)
    raw = read_toml(path, SuiteError, "suite")
    try:
        return SuiteFile.model_validate(raw)
    except ValidationError as error:
        raise SuiteError(describe_validation_error(error, path, SuiteFile)) from None


def load_suite_file(path: Path, suite: str, references: Path | None = None, kind: SuiteKind | None = None
                    ) -> tuple[list[Case], SuiteFile]:
    """The cases of a suite file; ``references`` (from the spec) overrides the file's reference root."""
    path = Path(path)
    parsed = read_suite_file(path)
    header = parsed.suite
    root = references or (path.parent / header.references if header.references else path.parent)
    width = max(3, len(str(len(parsed.cases) - 1)))
    cases: list[Case] = []
    seen: set[str] = set()
    for index, entry in enumerate(parsed.cases):
        case_id = entry.id or f"{index:0{width}d}"
        if case_id in seen:
            raise SuiteError(f"{path}: cases[{index}].id '{case_id}' is used twice; give every case its own id.")
        seen.add(case_id)
        where = f"{path}: cases[{index}] ('{case_id}')"
        cases.append(Case(
            suite=suite, case_id=case_id, prompt=entry.prompt,
            negative_prompt=entry.negative_prompt if entry.negative_prompt is not None else header.negative_prompt,
            loras=tuple(LoraTag(lora.name, lora.weight) for lora in entry.loras),
            style=entry.style, label=entry.label or entry.style,
            references=_references(entry.references, root, where, spec_given=references is not None),
            tags=entry.tags, kind=kind or header.kind, showcase_models=entry.showcase_models,
            lora_files=tuple({**header.lora_files, **entry.lora_files}.items()),
        ))
    return cases, parsed


def _references(entries: Sequence[str], root: Path, where: str, spec_given: bool) -> tuple[Path, ...]:
    found: list[Path] = []
    for entry in entries:
        target = (root / Path(entry).expanduser()).resolve()
        if target.is_dir():
            images = image_files(target)
            if not images:
                raise SuiteError(f"{where}: reference folder {target} holds no images (png, jpg, webp); add the "
                                 "reference images there.")
            found.extend(images)
        elif target.is_file():
            found.append(target)
        else:
            fix = ("set the suite's `references` in the spec to the folder that holds them" if not spec_given else
                   "check the spec's `references` folder")
            raise SuiteError(f"{where}: reference '{entry}' not found under {root}; {fix}.")
    return tuple(found)


# ---------------------------------------------------------------------------------------------------
# Writing (tomllib only reads; the format is small enough to write by hand)


def write_suite_file(path: Path, cases: Sequence[Case], *, name: str, kind: SuiteKind,
                     description: str | None = None) -> Path:
    """Write ``cases`` as a suite file; reference paths are written relative to the file's folder."""
    path = Path(path)
    lines = ["# ckptbench suite (docs/suites.md)", "[suite]", f"name = {_string(name)}", f"kind = {_string(kind)}"]
    if description:
        lines.append(f"description = {_string(description)}")
    for case in cases:
        lines += ["", "[[cases]]", f"id = {_string(case.case_id)}", f"prompt = {_string(case.prompt)}"]
        if case.negative_prompt is not None:
            lines.append(f"negative_prompt = {_string(case.negative_prompt)}")
        for key in ("style", "label"):
            if getattr(case, key):
                lines.append(f"{key} = {_string(getattr(case, key))}")
        if case.references:
            relative = [os.path.relpath(Path(ref).resolve(), path.parent.resolve()) for ref in case.references]
            lines.append(f"references = {_array(relative)}")
        if case.loras:
            entries = [f"{{ name = {_string(lora.name)}" + (f", weight = {lora.weight!r}" if lora.weight is not None
                                                            else "") + " }" for lora in case.loras]
            lines.append(f"loras = [{', '.join(entries)}]")
        if case.lora_files:
            pairs = ", ".join(f"{_string(k)} = {_string(v)}" for k, v in case.lora_files)
            lines.append(f"lora_files = {{ {pairs} }}")
        if case.showcase_models:
            lines.append(f"showcase_models = {_array(case.showcase_models)}")
        if case.tags:
            lines.append(f"tags = {_array(case.tags)}")
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _string(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes); non-ASCII stays readable.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _array(values: Sequence[str]) -> str:
    return "[" + ", ".join(_string(v) for v in values) + "]"
