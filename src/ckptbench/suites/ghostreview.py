"""Loaders for the suites of the GhostReview release, read from where the user keeps it.

Layout of the release (``ROOT``)::

    PromptsForReviews/PromptsSummaryFromCivitai.csv   quality prompts (index, Prompts; one copy per checkpoint)
    PromptsForReviews/StylePrompts.csv                style prompts (index, Prompts, Style)
    PromptsForReviews/LoRAPromptsFromCivitai.csv      LoRA showcase prompts (index, Prompts, LoRA, Add)
    PromptsForReviews/LoRAUseModel.csv                checkpoint each showcase was made with (NoTM)
    Image/TargetForReviews/StyleReview/<index>/       reference images of each style
    Image/TargetForReviews/LoRAReview/<index>.jpeg    the showcase image of each LoRA

The CSVs repeat every prompt once per reviewed checkpoint; a case is one distinct ``index``. ``path``
may be the release folder or the CSV file itself (then reference folders must be given explicitly).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from ckptbench.errors import SuiteError
from ckptbench.prompt import extract_lora_tags
from ckptbench.suites.case import Case
from ckptbench.suites.images import image_files

PROMPTS_CSV = "PromptsForReviews/PromptsSummaryFromCivitai.csv"
STYLES_CSV = "PromptsForReviews/StylePrompts.csv"
LORAS_CSV = "PromptsForReviews/LoRAPromptsFromCivitai.csv"
LORA_MODELS_CSV = "PromptsForReviews/LoRAUseModel.csv"
STYLE_REFERENCES = "Image/TargetForReviews/StyleReview"
LORA_REFERENCES = "Image/TargetForReviews/LoRAReview"


def case_id(index: int) -> str:
    return f"{index:03d}"


def load_prompts(path: Path, suite: str) -> list[Case]:
    """The quality suite: one case per distinct prompt index."""
    return [Case(suite=suite, case_id=case_id(index), prompt=row["Prompts"], kind="quality")
            for index, row in _distinct_rows(_csv_path(path, PROMPTS_CSV), ("index", "Prompts"))]


def load_styles(path: Path, suite: str, references: Path | None = None) -> list[Case]:
    """The style suite: one case per style, compared with the images in ``<references>/<index>/``."""
    csv_path = _csv_path(path, STYLES_CSV)
    root = _reference_root(path, references, STYLE_REFERENCES, csv_path)
    cases = []
    for index, row in _distinct_rows(csv_path, ("index", "Prompts", "Style")):
        folder = root / str(index)
        found = image_files(folder)
        if not found:
            raise SuiteError(f"{csv_path}: style {index} ('{row['Style']}'): no reference images in {folder}; put "
                             "the style's reference images there or set `references` to the folder that holds "
                             "one sub-folder per style index.")
        cases.append(Case(suite=suite, case_id=case_id(index), prompt=row["Prompts"], kind="style",
                          style=row["Style"], label=row["Style"], references=tuple(found)))
    return cases


def load_loras(path: Path, suite: str, references: Path | None = None,
               showcase_models: Path | None = None) -> list[Case]:
    """The LoRA suite: the showcase prompts with their ``<lora:…>`` tags, each compared with its showcase
    image; ``LoRAUseModel.csv`` (beside the prompts, or ``showcase_models``) names the checkpoint each
    showcase was made with, for NoTM."""
    csv_path = _csv_path(path, LORAS_CSV)
    root = _reference_root(path, references, LORA_REFERENCES, csv_path)
    models_path = showcase_models or csv_path.parent / Path(LORA_MODELS_CSV).name
    made_with = load_showcase_models(models_path) if models_path.is_file() else {}
    showcases: dict[str, Path] = {}
    for file in image_files(root):  # natural order: the first file of a stem wins
        showcases.setdefault(file.stem, file)
    cases = []
    for index, row in _distinct_rows(csv_path, ("index", "Prompts", "LoRA")):
        image = showcases.get(str(index))
        if image is None:
            raise SuiteError(f"{csv_path}: LoRA case {index} ('{row['LoRA']}'): no showcase image named {index}.* "
                             f"in {root}; put it there or set `references` to the folder of showcase images.")
        subject = Path(row["LoRA"]).stem
        _, tags = extract_lora_tags(row["Prompts"])
        # The CSV names the LoRA file the case is about; a prompt whose only tag uses another name (the
        # LoRA's alias, e.g. <lora:try2> for Colorwater_v4) refers to that file.
        mapping = ((tags[0].name, row["LoRA"]),) if len(tags) == 1 and tags[0].name != subject else ()
        model = made_with.get(index)
        cases.append(Case(suite=suite, case_id=case_id(index), prompt=row["Prompts"], kind="lora", label=subject,
                          references=(image,), showcase_models=(model,) if model else (), lora_files=mapping))
    return cases


def load_showcase_models(path: Path) -> dict[int, str]:
    """LoRA index → the checkpoint its showcase images were made with (``LoRAUseModel.csv``)."""
    return {index: row["used_sd_model_checkpoint"].strip()
            for index, row in _distinct_rows(path, ("index", "used_sd_model_checkpoint"))
            if row["used_sd_model_checkpoint"].strip()}


def read_table(path: Path, default: str, columns: tuple[str, ...]) -> dict[int, dict[str, str]]:
    """index → row of one of the release's CSVs (``path``: the release folder or the file)."""
    return dict(_distinct_rows(_csv_path(path, default), columns))


def _csv_path(path: Path, default: str) -> Path:
    csv_path = path / default if path.is_dir() else path
    if not csv_path.is_file():
        raise SuiteError(f"{csv_path}: GhostReview file not found; give the release folder (which holds "
                         f"{default}) or the CSV file itself as the suite's `path`.")
    return csv_path


def _reference_root(path: Path, references: Path | None, default: str, csv_path: Path) -> Path:
    if references is not None:
        root = references
    elif path.is_dir():
        root = path / default
    else:
        raise SuiteError(f"{csv_path}: the reference images' folder is unknown when `path` is a CSV file; set "
                         "`references` in the suite, or give the release folder as `path`.")
    if not root.is_dir():
        raise SuiteError(f"{root}: reference folder not found; set `references` to the folder of reference images.")
    return root


def _distinct_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows with a distinct ``index`` in file order (the release repeats each prompt per checkpoint)."""
    seen: set[int] = set()
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise SuiteError(f"{path}: column(s) {', '.join(missing)} missing; this is not the GhostReview file "
                             "the suite's `format` expects.")
        for line, row in enumerate(reader, start=2):
            try:
                index = int(row["index"])
            except ValueError:
                raise SuiteError(f"{path}: line {line}: index '{row['index']}' is not a number.") from None
            if index not in seen:
                seen.add(index)
                yield index, {key: (value or "") for key, value in row.items() if key is not None}
