from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ckptbench.cli import app
from ckptbench.errors import SpecError
from ckptbench.spec_load import load_spec


def test_valid_spec_loads_and_expands_seed_range(write_spec) -> None:
    path = write_spec(generation="seeds = {from = 1, to = 32}\nsampler = 'DPM++ 2M Karras'")
    spec = load_spec(path)
    assert spec.generation.seeds == tuple(range(1, 33))
    assert spec.generation.sampler == "DPM++ 2M Karras"
    assert [c.name for c in spec.checkpoints] == ["a", "b"]
    assert spec.store_path == (path.parent / "store").resolve()
    assert spec.scorers.options_for("clip-score").model is not None


def test_store_defaults_to_the_spec_folder(write_spec) -> None:
    path = write_spec(benchmark='name = "x"')
    assert load_spec(path).store_path == path.parent.resolve()


def _error(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return str(caught.value)


def test_unknown_key_names_key_file_and_suggestion(write_spec, tiny_models) -> None:
    path = write_spec(checkpoints=f'[[checkpoints]]\nname = "a"\npathh = "{tiny_models["folder_a"]}"')
    message = _error(path)
    assert str(path) in message
    assert "checkpoints[0].pathh" in message
    assert "did you mean 'path'" in message


def test_unknown_section_and_scorer_option_suggestions(write_spec, tiny_models) -> None:
    assert "did you mean 'generation'" in _error(
        write_spec(suites='[generaton]\nsteps = 3\n[[suites]]\nname = "q"\nprompts = ["x"]'))
    message = _error(write_spec(scorers=f'[scorers]\nuse = ["clip-score"]\n[scorers.clip-score]\nmodle = '
                                        f'"{tiny_models["clip"]}"'))
    assert "scorers.clip-score.modle" in message and "did you mean 'model'" in message
    assert "did you mean 'use'" in _error(write_spec(scorers='[scorers]\nusee = ["clip-score"]'))


def test_wrong_type_names_the_field(write_spec) -> None:
    message = _error(write_spec(generation='steps = "twenty"'))
    assert "generation.steps" in message and "'twenty'" in message


def test_missing_checkpoint_file(write_spec, tmp_path) -> None:
    message = _error(write_spec(checkpoints='[[checkpoints]]\nname = "gone"\npath = "missing.safetensors"'))
    assert "checkpoints[0].path" in message and "does not exist" in message
    assert str(tmp_path / "missing.safetensors") in message


@pytest.mark.parametrize(
    ("generation", "expected"),
    [("width = 100", "multiple of 8"), ("seeds = [1, 1]", "seeds repeat"), ("seeds = {from = 5, to = 2}", "smaller"),
     ("steps = 0", "generation.steps")],
)
def test_bad_generation_values(write_spec, generation: str, expected: str) -> None:
    assert expected in _error(write_spec(generation=generation))


def test_duplicate_checkpoint_names(write_spec, tiny_models) -> None:
    block = f'[[checkpoints]]\nname = "a"\npath = "{tiny_models["folder_a"]}"\n'
    assert "repeated: a" in _error(write_spec(checkpoints=block + block))


def test_checkpoint_needs_exactly_one_source(write_spec) -> None:
    assert "exactly one of" in _error(write_spec(checkpoints='[[checkpoints]]\nname = "a"'))


def test_invalid_toml(tmp_path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[benchmark\nname = 1")
    assert "not valid TOML" in _error(path)


def test_cli_validate_reports_clean_errors(write_spec) -> None:
    runner = CliRunner()
    good = runner.invoke(app, ["validate", str(write_spec())])
    assert good.exit_code == 0, good.output
    assert "2 checkpoints × 2 cases × 2 seeds = 8 images" in good.output

    bad_sampler = runner.invoke(app, ["validate", str(write_spec("s.toml", generation='sampler = "Euler A"'))])
    assert bad_sampler.exit_code == 2
    assert "unknown sampler 'Euler A'" in bad_sampler.output and "DPM++ 2M Karras" in bad_sampler.output
    assert "Traceback" not in bad_sampler.output

    bad_scorer = runner.invoke(app, ["validate", str(write_spec("t.toml", scorers='[scorers]\nuse = ["clipscore"]'))])
    assert bad_scorer.exit_code == 2 and "did you mean 'clip-score'" in bad_scorer.output
