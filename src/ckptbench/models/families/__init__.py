"""The model families ckptbench knows, registered in one place.

A family is a module here that defines ``FAMILY`` (a ``ModelFamily``); ``FAMILY_MODULES`` lists them in
detection order: a file is claimed by the first family whose rule matches its text encoders (or other
decisive tensors), and failing that by the first whose rule matches the denoiser alone. Adding a family
is adding its module and its name here.
"""

from __future__ import annotations

import functools
import importlib

from ckptbench.models.families.base import FamilyMatch, ModelFamily, Prediction

__all__ = ["FAMILY_MODULES", "FamilyMatch", "ModelFamily", "Prediction", "all_families", "family_names",
           "get_family"]

FAMILY_MODULES = ("flux", "sd35", "sdxl", "sd2", "sd15")


@functools.cache
def all_families() -> tuple[ModelFamily, ...]:
    """Every registered family, in detection order."""
    families = []
    for module_name in FAMILY_MODULES:
        family = importlib.import_module(f"{__name__}.{module_name}").FAMILY
        if family.name != module_name:
            raise RuntimeError(f"family module {module_name} registers '{family.name}'")
        families.append(family)
    return tuple(families)


def family_names() -> tuple[str, ...]:
    return tuple(family.name for family in all_families())


def get_family(name: str) -> ModelFamily:
    for family in all_families():
        if family.name == name:
            return family
    raise KeyError(f"unknown model family '{name}'; known: {', '.join(family_names())}")
