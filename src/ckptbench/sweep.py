"""Sweeps: ``[generation]`` settings given as lists become axes, as in A1111's X/Y/Z plot.

``cfg = [5, 7]`` under ``[generation]`` makes every case with every seed twice, once per value; several
list-valued settings are crossed (``cfg = [5, 7]`` and ``steps = [20, 30]`` make four variants). The
sweepable settings are ``cfg``, ``steps``, ``sampler``, ``clip_skip``, ``default_lora_weight``,
``prompt_sr`` (A1111's "Prompt S/R": the first entry is searched in the prompt and negative prompt, each
entry replaces it, so the first variant is the prompt as written) and ``[generation.hires] enabled =
[false, true]`` (hires fix off and on).

A variant only changes what the image is made with, so an image made with cfg 7 in a sweep has the same
content key as one made by a spec that says ``cfg = 7``: sweeps share the store's cache with plain runs.
The spec keeps the first value of each list in the setting itself (what code unaware of sweeps sees)
and the axes, in the order written, in ``[generation] sweep``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from ckptbench.errors import SpecError

if TYPE_CHECKING:
    from ckptbench.spec import GenerationSettings
    from ckptbench.suites.case import Case

AxisName = Literal["cfg", "steps", "sampler", "clip_skip", "default_lora_weight", "prompt_sr", "hires"]
SweepValue = bool | int | float | str

# axis → how tables and grids name it (A1111's X/Y/Z names where it has one)
AXIS_TITLES: dict[str, str] = {
    "cfg": "CFG scale", "steps": "Steps", "sampler": "Sampler", "clip_skip": "Clip skip",
    "default_lora_weight": "LoRA weight", "prompt_sr": "Prompt S/R", "hires": "Hires fix",
}
# settings of [generation] that keep their first value when given as a list
_SETTING_AXES = ("cfg", "steps", "sampler", "clip_skip", "default_lora_weight")


class SweepAxis(BaseModel):
    """One axis of a sweep: a setting and the values it takes, in the order given."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: AxisName
    values: tuple[SweepValue, ...]

    @property
    def title(self) -> str:
        return AXIS_TITLES[self.name]

    def label(self, value: SweepValue) -> str:
        return value_label(self.name, value)

    @property
    def labels(self) -> list[str]:
        return [self.label(value) for value in self.values]


def value_label(axis: str, value: SweepValue) -> str:
    """How a value is shown: 7.0 → "7", True → "on" (hires fix), text as it is."""
    if axis == "hires":
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Variant:
    """One combination of axis values; ``id`` names it in the store and tables ("" without a sweep)."""

    id: str
    values: tuple[tuple[str, SweepValue], ...] = ()  # (axis, value) in axis order
    prompt_search: str | None = None  # prompt S/R: the text each value replaces (the axis' first value)

    def value(self, axis: str) -> SweepValue | None:
        return dict(self.values).get(axis)

    def labels(self) -> dict[str, str]:
        return {axis: value_label(axis, value) for axis, value in self.values}


NO_SWEEP = Variant("")


def split_sweep_lists(data: Any) -> Any:
    """The raw ``[generation]`` table with its list-valued settings moved into ``sweep`` (before validation).

    Each list's values are checked as the setting itself would be, so ``cfg = [5, 70]`` is refused with the
    setting's own limit; the setting keeps the list's first value."""
    if not isinstance(data, dict):
        return data
    from ckptbench.spec import GenerationSettings  # the settings' own field rules check each value

    data = dict(data)
    axes: list[dict[str, Any]] = []
    for key in list(data):  # in the order written: the first list is the X axis, then Y, then Z
        value = data[key]
        setting = _setting_named(key, GenerationSettings)
        if setting is not None and isinstance(value, list):
            values = _checked_values(key, value, GenerationSettings.model_fields[setting])
            axes.append({"name": setting, "values": values})
            data[key] = values[0]
        elif key == "prompt_sr":
            axes.append({"name": "prompt_sr", "values": _prompt_sr(data.pop("prompt_sr"))})
        elif key == "hires" and isinstance(value, dict) and isinstance(value.get("enabled"), list):
            axes.append({"name": "hires", "values": _checked_values("hires.enabled", value["enabled"], bool)})
            data["hires"] = {name: item for name, item in value.items() if name != "enabled"}
    if axes:
        if data.get("sweep"):
            raise ValueError("give the sweep either as lists of values or as `sweep`, not both")
        data["sweep"] = axes
    return data


def _setting_named(key: str, model: type[BaseModel]) -> str | None:
    """The sweepable setting a key of the table names: its field name, or an alias the spec accepts for it."""
    for name in _SETTING_AXES:
        field = model.model_fields[name]
        choices = getattr(field.validation_alias, "choices", [field.validation_alias])
        if key == name or key == field.alias or key in choices:
            return name
    return None


def _checked_values(key: str, values: list[Any], field: Any) -> list[Any]:
    if not values:
        raise ValueError(f"{key} is an empty list; give one value, or a list of values to sweep over")
    if isinstance(field, type):
        annotation = field
    else:  # a pydantic FieldInfo: its type with its constraints (ge, le, …)
        annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    adapter: TypeAdapter[Any] = TypeAdapter(annotation)
    checked = []
    for index, value in enumerate(values):
        try:
            # A switch takes only a real TOML boolean, as the spec's other switches do.
            checked.append(adapter.validate_python(value, strict=field is bool))
        except ValidationError as error:
            problem = error.errors()[0]["msg"].removeprefix("Value error, ").removeprefix("Input ")
            raise ValueError(f"{key}[{index}] = {value!r}: {problem}") from None
    repeated = sorted({str(v) for v in checked if checked.count(v) > 1})
    if repeated:
        raise ValueError(f"{key} repeats {', '.join(repeated)}; each value of a sweep must appear once")
    return checked


def _prompt_sr(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, str) for v in value):
        raise ValueError("prompt_sr must be a list of at least two texts: the text to search for in the prompts, "
                         "then each text to put in its place (as A1111's Prompt S/R), e.g. [\"dog\", \"cat\"]")
    if not value[0]:
        raise ValueError("prompt_sr: the first entry is the text searched for in the prompts; it cannot be empty")
    return _checked_values("prompt_sr", value, str)


def variants(axes: tuple[SweepAxis, ...]) -> list[Variant]:
    """Every combination of the axes' values, the first axis varying slowest; [NO_SWEEP] without axes."""
    if not axes:
        return [NO_SWEEP]
    search = next((str(axis.values[0]) for axis in axes if axis.name == "prompt_sr"), None)
    found = []
    for combination in itertools.product(*(axis.values for axis in axes)):
        values = tuple((axis.name, value) for axis, value in zip(axes, combination, strict=True))
        name = ", ".join(f"{axis}={value_label(axis, value)}" for axis, value in values)
        found.append(Variant(name, values, search))
    return found


def variant_generation(generation: GenerationSettings, variant: Variant) -> GenerationSettings:
    """The generation settings one variant makes its images with (its prompt S/R aside: ``variant_case``)."""
    update: dict[str, Any] = {axis: value for axis, value in variant.values if axis in _SETTING_AXES}
    if variant.value("hires") is False:
        update["hires"] = None
    return generation.model_copy(update=update) if update else generation


def variant_case(case: Case, variant: Variant, default_negative: str) -> Case:
    """The case with the variant's prompt S/R applied to its prompt and (effective) negative prompt."""
    replacement = variant.value("prompt_sr")
    search = variant.prompt_search
    if replacement is None or search is None or replacement == search:
        return case
    negative = case.negative_prompt if case.negative_prompt is not None else default_negative
    new_negative = negative.replace(search, str(replacement))
    return replace(case, prompt=case.prompt.replace(search, str(replacement)),
                   negative_prompt=new_negative if new_negative != negative else case.negative_prompt)


def sweep_values(generation: GenerationSettings, setting: str) -> list[SweepValue]:
    """The values a setting takes in the run: its sweep axis' values, or the setting alone."""
    for axis in generation.sweep:
        if axis.name == setting:
            return list(axis.values)
    return [getattr(generation, setting)]


def check_prompt_search(generation: GenerationSettings, cases: Sequence[Case]) -> None:
    """A prompt S/R whose text is in no prompt or negative prompt is a typo: A1111 refuses it, and so do we."""
    search = next((str(axis.values[0]) for axis in generation.sweep if axis.name == "prompt_sr"), None)
    if search is None:
        return
    negatives = [generation.negative_prompt, *(case.negative_prompt or "" for case in cases)]
    if not any(search in text for text in [*(case.prompt for case in cases), *negatives]):
        raise SpecError(f"generation.prompt_sr: '{search}' (the text to replace) is in no prompt or negative prompt "
                        "of the spec's suites; fix the first entry of prompt_sr, which must appear as written.")


def recorded_axes(spec: dict[str, Any]) -> tuple[SweepAxis, ...]:
    """The sweep a run recorded in its effective spec (none for runs without one, and for imports)."""
    raw = (spec.get("generation") or {}).get("sweep") or ()
    return tuple(SweepAxis.model_validate(axis) for axis in raw)
