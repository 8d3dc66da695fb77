"""The scorer registry: identities declared once (in the registry), classes imported on use."""

from __future__ import annotations

import pytest

from ckptbench.errors import SpecError
from ckptbench.metrics.base import ImageScorer, SetScorer
from ckptbench.metrics.registry import SCORERS, scorer_entry


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_every_entry_names_a_class_that_carries_its_identity(name: str) -> None:
    entry = SCORERS[name]
    cls = entry.load()
    assert cls.name == name and cls.entry is entry
    assert (cls.version, cls.level, cls.backbone_kind, cls.higher_is_better, cls.scale, cls.description) == (
        entry.version, entry.level, entry.backbone_kind, entry.higher_is_better, entry.scale, entry.description)
    assert issubclass(cls, SetScorer if entry.level == "set" else ImageScorer)
    # What `ckptbench scorers` lists as the default weights names what the class loads by default.
    assert cls.default_model in entry.default_weights
    assert cls.default_weights() == entry.default_weights


def test_a_class_may_not_declare_its_identity_itself() -> None:
    with pytest.raises(TypeError, match=r"declares version; .*ckptbench.metrics.registry"):
        type("Rogue", (ImageScorer,), {"name": "clip-score", "version": "9"})


def test_a_class_must_be_registered() -> None:
    with pytest.raises(TypeError, match=r"'not-registered', which ckptbench\.metrics\.registry does not list"):
        type("Unlisted", (ImageScorer,), {"name": "not-registered"})


def test_the_level_must_match_the_entry() -> None:
    with pytest.raises(TypeError, match=r"image-level scorer but its ScorerEntry .* says 'set'"):
        type("WrongLevel", (ImageScorer,), {"name": "kid"})


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(SpecError, match="unknown scorer 'clipscore'; did you mean 'clip-score'"):
        scorer_entry("clipscore")
