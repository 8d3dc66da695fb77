"""Arbitrary input to the spec loader gives a spec or a clean SpecError, never another exception."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ckptbench.errors import SpecError
from ckptbench.spec_load import load_spec, spec_from_dict

KEYS = ["benchmark", "checkpoints", "generation", "suites", "scorers", "name", "path", "hub", "seeds", "from",
        "to", "steps", "cfg", "width", "height", "prompts", "use", "model", "head", "store", "clip-score",
        "sampler", "batch_size", "options", "config"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8),
                                                                       inner, max_size=5)), max_leaves=25)
documents = st.dictionaries(st.sampled_from(KEYS), values, max_size=6)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(document=documents)
def test_spec_from_arbitrary_dicts(document: dict, tmp_path_factory) -> None:
    path = Path("fuzz.toml")
    try:
        spec_from_dict(document, path)
    except SpecError as error:
        assert str(error).startswith(str(path)) or "fuzz.toml" in str(error)


@FUZZ
@given(text=st.text(max_size=300))
def test_load_spec_from_arbitrary_text(text: str, tmp_path_factory) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "spec.toml"
    path.write_text(text, encoding="utf-8")
    try:
        load_spec(path)
    except SpecError:
        pass


@FUZZ
@given(data=st.binary(max_size=200))
def test_load_spec_from_arbitrary_bytes(data: bytes, tmp_path_factory) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "spec.toml"
    path.write_bytes(data)
    try:
        load_spec(path)
    except SpecError:
        pass


VALID = {
    "benchmark": {"name": "fuzz"},
    "checkpoints": [{"name": "a", "hub": "org/a"}, {"name": "b", "hub": "org/b"}],
    "generation": {"sampler": "Euler", "steps": 4, "width": 64, "height": 64, "seeds": [1, 2]},
    "suites": [{"name": "q", "prompts": ["a cat"]}],
    "scorers": {"use": ["clip-score"], "clip-score": {"model": "org/clip"}},
}


@st.composite
def mutated_specs(draw: st.DrawFn) -> dict:
    import copy

    document = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(sorted(document)))
        target = document[section]
        if isinstance(target, list):
            target = target[draw(st.integers(0, len(target) - 1))]
        key = draw(st.sampled_from(sorted(target)) | st.sampled_from(KEYS))
        target[key] = draw(values)
    return document


@FUZZ
@given(document=mutated_specs())
def test_spec_from_mutated_valid_specs(document: dict) -> None:
    try:
        spec = spec_from_dict(document, Path("fuzz.toml"))
    except SpecError as error:
        assert "fuzz.toml" in str(error)
    else:
        assert spec.checkpoints and spec.suites and spec.scorers.use


def test_the_unmutated_spec_is_valid() -> None:
    assert spec_from_dict(VALID, Path("fuzz.toml")).generation.seeds == (1, 2)
