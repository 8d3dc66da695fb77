"""Spec keys of the review protocol: presets, suite sources, per-suite seeds and the [analysis] table."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptbench.errors import SpecError, SuiteError
from ckptbench.presets import GHOSTREVIEW_NEGATIVE
from ckptbench.spec_load import load_spec
from ckptbench.suites.load import load_suites


def _error(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return str(caught.value)


def test_ghostreview_preset_and_overrides(write_spec) -> None:
    spec = load_spec(write_spec(benchmark='name = "t"\npreset = "ghostreview"', generation="steps = 12"))
    generation = spec.generation
    assert (generation.sampler, generation.cfg, generation.width, generation.height) == ("DPM++ 2M Karras", 6.0,
                                                                                          512, 768)
    assert generation.seeds == tuple(range(1, 33)) and generation.lora_seeds == tuple(range(1, 21))
    assert generation.batch_size == 4 and generation.negative_prompt == GHOSTREVIEW_NEGATIVE
    assert generation.steps == 12  # the spec's own key wins over the preset's 30
    assert generation.hires is not None and (generation.hires.scale, generation.hires.denoise) == (2.0, 0.5)
    assert spec.model_dump(mode="json", by_alias=True)["benchmark"]["preset"] == "ghostreview"
    quick = load_spec(write_spec("q.toml", benchmark='name = "t"\npreset = "quick"', generation="width = 64"))
    assert quick.generation.seeds == (1, 2, 3, 4) and quick.generation.width == 64
    assert quick.generation.hires is None
    assert "did you mean 'quick'" in _error(write_spec("x.toml", benchmark='name = "t"\npreset = "quik"'))


def test_suite_sources_and_seeds(write_spec, shared_data: Path, tmp_path: Path) -> None:
    release = shared_data / "ghostreview"
    parti = shared_data / "prompts" / "PartiPrompts.tsv"
    suites = f'''
        [[suites]]
        builtin = "quality"
        seeds = [7]

        [[suites]]
        format = "ghostreview-loras"
        path = "{release}"

        [[suites]]
        name = "parti-animals"
        format = "partiprompts"
        path = "{parti}"
        category = ["Animals"]
        limit = 5
        lora_files = {{ try2 = "x.safetensors" }}
    '''
    spec = load_spec(write_spec(suites=suites, generation="seeds = [1, 2]\nlora_seeds = {from = 1, to = 3}"))
    loaded = {suite.name: suite for suite in load_suites(spec)}
    assert list(loaded) == ["quality", "ghostreview-loras", "parti-animals"]
    assert loaded["quality"].seeds == (7,) and len(loaded["quality"].cases) == 30
    assert loaded["ghostreview-loras"].kind == "lora" and loaded["ghostreview-loras"].seeds == (1, 2, 3)
    assert loaded["parti-animals"].seeds == (1, 2) and len(loaded["parti-animals"].cases) == 5
    assert dict(loaded["parti-animals"].cases[0].lora_files) == {"try2": "x.safetensors"}


def test_suite_source_errors(write_spec, tmp_path: Path) -> None:
    two = write_spec(suites='[[suites]]\nname = "x"\nprompts = ["a"]\nbuiltin = "quality"')
    assert "exactly one source" in _error(two) and "prompts, builtin" in _error(two)
    assert "`path` goes with `format`" in _error(write_spec("b.toml", suites='[[suites]]\nformat = "partiprompts"'))
    missing = write_spec("c.toml", suites='[[suites]]\nfile = "nowhere.toml"')
    assert "suites[0].file" in _error(missing) and "does not exist" in _error(missing)
    filters = write_spec("d.toml", suites='[[suites]]\nbuiltin = "quality"\ncategory = ["Animals"]')
    assert "filter PartiPrompts" in _error(filters)
    assert "did you mean 'format'" in _error(write_spec("e.toml", suites='[[suites]]\nfromat = "x"\nprompts = ["a"]'))
    styles = load_spec(write_spec("f.toml", suites='[[suites]]\nbuiltin = "styles"'))
    with pytest.raises(SuiteError, match="set `references` to your folder of style reference images"):
        load_suites(styles)


def test_analysis_table(write_spec) -> None:
    spec = load_spec(write_spec(suites='[[suites]]\nname = "q"\nprompts = ["a"]\n[analysis]\nbaseline = "a"\n'
                                       'thresholds = { laion-aesthetic-v2 = 6.0 }\ncomposite = { clip-score = 1.0 }'))
    assert spec.analysis.baseline == "a" and spec.analysis.thresholds == {"laion-aesthetic-v2": 6.0}
    assert "did you mean 'a'" in _error(write_spec("b.toml", suites='[[suites]]\nname = "q"\nprompts = ["a"]\n'
                                                                   '[analysis]\nbaseline = "aa"'))
    message = _error(write_spec("c.toml", suites='[[suites]]\nname = "q"\nprompts = ["a"]\n[analysis]\n'
                                                 'composite = { clip-scor = 1.0 }'))
    assert "analysis.composite names scorer 'clip-scor'" in message and "did you mean 'clip-score'" in message
