"""A pydantic validation error of a TOML file as one sentence naming the file, the key and the fix."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ckptbench.textfiles import closest


def describe_validation_error(error: ValidationError, path: Path, root: type[BaseModel]) -> str:
    """One sentence (plus a count of further problems) for a validation error of ``root`` read from ``path``."""
    items = error.errors()
    # A list whose only entry is invalid is also reported as too short: the entry's own error says it all.
    causes = [item for item in items if not (item["type"] == "too_short" and any(
        len(other["loc"]) > len(item["loc"]) and other["loc"][: len(item["loc"])] == item["loc"] for other in items))]
    messages = [_describe_one(item, path, root) for item in causes or items]
    if len(messages) == 1:
        return messages[0]
    return messages[0] + f" (and {len(messages) - 1} more problem(s): " + "; ".join(
        m.split(": ", 1)[-1] for m in messages[1:4]) + ")"


def _describe_one(item: Any, path: Path, root: type[BaseModel]) -> str:
    loc = tuple(part for part in item["loc"] if part not in ("function-after", "function-before"))
    where = _format_loc(loc)
    kind = item["type"]
    if kind == "extra_forbidden":
        if dotted := _dotted_scorer_table(loc, item.get("input")):
            return (f"{path}: [scorers.{dotted}] is read by TOML as a table '{loc[2]}' holding a table "
                    f"'{dotted.split('.', 1)[1]}' (a dot separates TOML keys); quote a scorer name that has a dot: "
                    f'[scorers."{dotted}"].')
        valid = _valid_keys_at(loc[:-1], root)
        hint = _ecosystem_name(str(loc[-1]), valid) or did_you_mean(str(loc[-1]), valid)
        listing = f" Valid keys here: {', '.join(sorted(valid))}." if valid and not hint else ""
        return f"{path}: unknown key '{where}'{hint}; remove or rename it.{listing}"
    if kind == "missing":
        return f"{path}: missing required key '{where}'; add it."
    if kind == "too_short" and item.get("ctx", {}).get("actual_length") == 0:
        return f"{path}: {where} is empty; put at least {item['ctx']['min_length']} entry in it."
    given = item.get("input")
    shown = f" (got {given!r})" if not isinstance(given, dict | list) else ""
    message = item["msg"].removeprefix("Value error, ")
    if message.startswith("Input should"):  # pydantic's wording for a wrong type or choice
        return f"{path}: {where or 'spec'} {message.removeprefix('Input ')}{shown}; fix this value."
    return f"{path}: {where or 'spec'}: {message}{shown}; fix this value."


# Keys as A1111 and diffusers name them, for the "did you mean" of a spec written with those habits.
_ECOSYSTEM_NAMES = {
    "cfg_scale": ("cfg", "A1111's name"), "guidance_scale": ("cfg", "diffusers' name"),
    "seed": ("seeds", "one seed; ckptbench takes a list"), "sampler_name": ("sampler", "A1111's API name"),
    "sampler_index": ("sampler", "A1111's API name"), "num_inference_steps": ("steps", "diffusers' name"),
    "CLIP_stop_at_last_layers": ("clip_skip", "A1111's setting"), "enable_hr": ("hires", "A1111's API name"),
    "negative": ("negative_prompt", "short for it"),
}


def _ecosystem_name(key: str, valid: list[str]) -> str:
    target, origin = _ECOSYSTEM_NAMES.get(key, ("", ""))
    return f" — did you mean '{target}'? ('{key}' is {origin})" if target in valid else ""


def _dotted_scorer_table(loc: tuple[Any, ...], given: Any) -> str | None:
    """``[scorers.hps-v2.1]`` parses as table 'hps-v2' holding table '1': the joined name, when that is what
    happened (a table where a scorer option belongs), else None."""
    if len(loc) >= 4 and loc[:2] == ("scorers", "options") and isinstance(given, dict):
        return ".".join(str(part) for part in loc[2:])
    return None


def _format_loc(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text.replace(".options.", ".")


def _valid_keys_at(loc: tuple[Any, ...], root: type[BaseModel]) -> list[str]:
    model: type[BaseModel] | None = root
    parts = [part for part in loc if not isinstance(part, int)]
    index = 0
    while index < len(parts) and model is not None:
        field = model.model_fields.get(str(parts[index]))
        model = _model_of(field.annotation) if field else None
        # A table of named entries ({name: Model}, e.g. a scorer's options): the next part is a name, not a key.
        index += 2 if field and typing.get_origin(field.annotation) is dict else 1
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


def did_you_mean(name: str, candidates: Any) -> str:
    close = closest(name, candidates)
    return f" — did you mean '{close}'?" if close else ""
