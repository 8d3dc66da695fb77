"""Reading every suite a spec names, whatever its source, into cases with their seeds."""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from ckptbench.errors import SuiteError
from ckptbench.spec import BenchmarkSpec, SuiteKind, SuiteSpec
from ckptbench.suites import ghostreview
from ckptbench.suites.case import Case
from ckptbench.suites.infotext_suite import cases_from_images
from ckptbench.suites.parti import load_parti
from ckptbench.suites.toml_suite import load_suite_file

BUILTIN_FILES = {"quality": "quality.toml", "styles": "styles.toml", "compositional": "compositional.toml"}


@dataclass(frozen=True)
class LoadedSuite:
    name: str
    kind: SuiteKind
    cases: tuple[Case, ...]
    seeds: tuple[int, ...]


def builtin_suite_path(name: str) -> Path:
    return Path(str(resources.files("ckptbench.suites") / "data" / BUILTIN_FILES[name]))


def load_suites(spec: BenchmarkSpec) -> list[LoadedSuite]:
    """Every suite of the spec, in spec order; a problem with a suite is a ``SuiteError`` naming it."""
    loaded = []
    for suite in spec.suites:
        cases = _read_cases(suite)
        if not cases:
            raise SuiteError(f"suite '{suite.name}' ({_source(suite)}) has no cases; add prompts to it or remove "
                             "the suite from the spec.")
        if suite.limit is not None:
            cases = cases[: suite.limit]
        kind = suite.kind or cases[0].kind
        cases = [_with_suite_settings(case, suite, kind) for case in cases]
        generation = spec.generation
        seeds = suite.seeds or (generation.lora_seeds if kind == "lora" and generation.lora_seeds else None) \
            or generation.seeds
        loaded.append(LoadedSuite(suite.name, kind, tuple(cases), tuple(seeds)))
    return loaded


def checked_suites(spec: BenchmarkSpec) -> list[LoadedSuite]:
    """The spec's suites, after checking its scorer and sampler names: what every command checks before any
    work (a missing suite file or reference folder stops it then too)."""
    # Imported here: they bring torch and every scorer, which reading suites does not need.
    from ckptbench.generate.samplers import sampler_recipe
    from ckptbench.metrics.registry import check_scorer_names

    check_scorer_names(spec)
    sampler_recipe(spec.generation.sampler)
    return load_suites(spec)


def _read_cases(suite: SuiteSpec) -> list[Case]:
    name = suite.name
    if suite.prompts is not None:
        width = max(3, len(str(len(suite.prompts) - 1)))
        return [Case(suite=name, case_id=f"{i:0{width}d}", prompt=p) for i, p in enumerate(suite.prompts)]
    if suite.file is not None or suite.builtin is not None:
        path = suite.file if suite.file is not None else builtin_suite_path(str(suite.builtin))
        if suite.builtin == "styles" and suite.references is None:
            raise SuiteError(f"suite '{name}' (builtin 'styles'): set `references` to your folder of style reference "
                             "images, with one sub-folder per style (Anime, Manga, Photographic, Isometric, Low_Poly, "
                             "Line_Art, 3D_Model, Pixel_Art, Watercolor).")
        cases, _ = load_suite_file(path, name, suite.references, suite.kind)
        return cases
    assert suite.path is not None
    if suite.format == "ghostreview-prompts":
        return ghostreview.load_prompts(suite.path, name)
    if suite.format == "ghostreview-styles":
        return ghostreview.load_styles(suite.path, name, suite.references)
    if suite.format == "ghostreview-loras":
        return ghostreview.load_loras(suite.path, name, suite.references, suite.showcase_models)
    if suite.format == "partiprompts":
        return load_parti(suite.path, name, suite.category, suite.challenge)
    cases, skipped = cases_from_images(suite.path, name, suite.kind)
    if skipped:
        listing = ", ".join(p.name for p in skipped[:5]) + (" …" if len(skipped) > 5 else "")
        raise SuiteError(f"suite '{name}': {len(skipped)} image(s) in {suite.path} carry no A1111 infotext "
                         f"({listing}); remove them, add a sidecar .txt with the parameters, or write a suite file "
                         "with `ckptbench import infotext`.")
    if not cases:
        raise SuiteError(f"suite '{name}': no image with infotext in {suite.path}.")
    return cases


def _source(suite: SuiteSpec) -> str:
    if suite.file is not None:
        return f"file {suite.file}"
    if suite.builtin is not None:
        return f"builtin '{suite.builtin}'"
    if suite.format is not None:
        return f"{suite.format} {suite.path}"
    return "inline prompts"


def _with_suite_settings(case: Case, suite: SuiteSpec, kind: SuiteKind) -> Case:
    negative = case.negative_prompt if case.negative_prompt is not None else suite.negative_prompt
    # The spec's mapping is the user's last word: it overrides what a suite file or loader inferred.
    mapping = {**dict(case.lora_files), **dict(suite.lora_files)}
    return replace(case, kind=kind, negative_prompt=negative, lora_files=tuple(mapping.items()))
