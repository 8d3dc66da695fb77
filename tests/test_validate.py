"""``ckptbench validate`` makes every check the run makes before loading weights (issue 17, point 2), with the
run's own message: a LoRA name typo, scorer weights that are not there, a scorer model folder whose layout is
refused, and a single file whose sizes need `config`. Each case is validated, then run: the run prints the
same sentence (and the single file's message is whole, where the loader's was cut mid-word)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ckptbench.cli import app
from tests.conftest import write_spec_text
from tests.test_broken_inputs import GENERATION, _one_line, _scorers, _sdxl_lora


def _invoke(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result


@dataclass(frozen=True)
class Problem:
    sections: dict[str, str]  # write_spec_text sections
    says: tuple[str, ...]  # pieces of the message, in validate's and the run's output alike
    run_exit: int  # the run: 2 (stops before any work), 3 (partial) or 4 (every checkpoint failed)


def _problems(tiny_models: dict[str, Path], folder: Path) -> dict[str, Problem]:
    (folder / "loras").mkdir()
    _sdxl_lora(folder / "loras" / "xl_detail.safetensors")
    (folder / "weightless-clip").mkdir()
    (folder / "weightless-clip" / "config.json").write_text((tiny_models["clip"] / "config.json").read_text())
    one_good = f'[[checkpoints]]\nname = "good"\npath = "{tiny_models["folder_b"]}"'
    clip_options = '[scorers]\nuse = ["clip-score"]\n[scorers.clip-score]\nmodel = "{}"\n'
    return {
        "lora-name-typo": Problem(
            {"checkpoints": one_good, "generation": GENERATION + f'\nlora_dirs = ["{folder / "loras"}"]',
             "suites": '[[suites]]\nname = "q"\nprompts = ["a red cube", "a red cube <lora:xl_detial>"]'},
            ("skipped: case q/001: LoRA 'xl_detial' was not found in lora_dirs", "did you mean 'xl_detail'?"), 3),
        "scorer-weights-not-in-cache": Problem(
            {"checkpoints": one_good, "scorers": clip_options.format("nobody/no-such-clip")},
            ("error: scorer 'clip-score': model 'nobody/no-such-clip' is not in the local Hugging Face cache",
             "hf download nobody/no-such-clip"), 2),
        "scorer-folder-layout-refused": Problem(
            {"checkpoints": one_good, "scorers": clip_options.format(folder / "weightless-clip")},
            (f"error: scorer 'clip-score': {folder / 'weightless-clip'} holds no model weights",
             "[scorers.clip-score] model"), 2),  # the bracketed words survive the console's markup
        "single-file-needs-config": Problem(
            {"checkpoints": f'[[checkpoints]]\nname = "tiny"\npath = "{tiny_models["single_a"]}"'},
            ("checkpoint 'tiny': a.safetensors does not fit the bundled sd15 config: the text_encoder's width is 32 "
             "in the file", "but 768 in the config", "set `config` for this checkpoint"), 4),
    }


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory, tiny_models) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("validate")
    outcomes = {}
    for name, problem in _problems(tiny_models, folder).items():
        spec = folder / f"{name}.toml"
        sections = {"generation": GENERATION, "suites": '[[suites]]\nname = "q"\nprompts = ["a red cube"]',
                    "scorers": _scorers(tiny_models), "benchmark": f'name = "v"\nstore = "store-{name}"',
                    **problem.sections}
        spec.write_text(write_spec_text(tiny_models, **sections))
        validated = _invoke("validate", str(spec))
        store_written = (folder / f"store-{name}").exists()
        outcomes[name] = {"problem": problem, "validate": validated, "store_written": store_written,
                          "run": _invoke("run", str(spec))}
    return outcomes


@pytest.mark.parametrize("name", ["lora-name-typo", "scorer-weights-not-in-cache", "scorer-folder-layout-refused",
                                  "single-file-needs-config"])
def test_validate_rejects_what_the_run_would_fail_with_the_runs_message(name: str, checked) -> None:
    outcome = checked[name]
    problem, validated, run = outcome["problem"], outcome["validate"], outcome["run"]
    assert validated.exit_code == 2, validated.output
    assert ": valid —" not in validated.output
    assert not outcome["store_written"]  # validating writes nothing beside the spec
    for piece in problem.says:
        assert _one_line(piece) in _one_line(validated.output), (piece, validated.output)
        assert _one_line(piece) in _one_line(run.output), (piece, run.output)  # the run says the same
    assert run.exit_code == problem.run_exit, run.output


def test_a_lora_typo_is_on_the_runs_console_not_only_in_results(checked) -> None:
    run = checked["lora-name-typo"]["run"]
    assert _one_line("skipped: case q/001: LoRA 'xl_detial' was not found") in _one_line(run.output)
    assert "everything is already in the store" not in run.output


def test_a_size_mismatch_is_one_whole_sentence(checked) -> None:
    """The loader's own size error used to be cut at 300 characters ("For more informatio)")."""
    output = checked["single-file-needs-config"]["run"].output
    assert "informatio)" not in output and "low_cpu_mem_usage" not in output
    assert _one_line("more size(s) differ); set `config` for this checkpoint to a diffusers config folder") in \
        _one_line(output)


def test_describe_load_error_keeps_the_sizes_and_drops_the_loaders_advice() -> None:
    from ckptbench.models.sizes import describe_load_error

    loader = ValueError("Cannot load  because embeddings.position_embedding.weight expected shape torch.Size([77, "
                        "768]), but got torch.Size([77, 32]). If you want to instead overwrite randomly initialized "
                        "weights, please make sure to pass both `low_cpu_mem_usage=False` and "
                        "`ignore_mismatched_sizes=True`. For more information, see also: https://github.com/x")
    assert describe_load_error(loader) == ("tensor embeddings.position_embedding.weight is 77×32 in the file but "
                                           "77×768 in the config")
    assert describe_load_error(RuntimeError("Error(s) in loading. Missing key(s): a, b.\nmore")) == \
        "Error(s) in loading"


def test_a_valid_spec_says_what_it_would_make(write_spec) -> None:
    result = _invoke("validate", str(write_spec()))
    assert result.exit_code == 0, result.output
    assert _one_line("valid — 2 checkpoints × 2 cases × 2 seeds = 8 images") in _one_line(result.output)


def test_the_size_check_names_the_size_that_differs() -> None:
    """A real-size SD1.5 layout (header only) against SDXL's config: same widths per level, but the
    cross-attention width (768 vs 2048) cannot fit; against its own config it fits."""
    from pathlib import Path as _Path

    from ckptbench.models.checkpoint import BUNDLED_CONFIGS
    from ckptbench.models.families import get_family
    from ckptbench.models.ldm_layout import pipeline_to_ldm
    from ckptbench.models.state_dict import ModelFile, TensorInfo
    from tests.test_real_size_layouts import _modules

    modules = _modules("sd15")
    state = pipeline_to_ldm(modules["unet"], modules["vae"], modules["text_encoder"], open_clip=False)
    model = ModelFile(_Path("sd15.safetensors"), "safetensors",
                      {key: TensorInfo("F16", tuple(value.shape)) for key, value in state.items()}, {})
    family = get_family("sd15")
    assert family.size_problem(model, BUNDLED_CONFIGS / "sd15", baked_vae=True) is None
    problem = family.size_problem(model, BUNDLED_CONFIGS / "sdxl", baked_vae=False)
    assert problem == ("the UNet's cross-attention width is 768 in the file (model.diffusion_model.input_blocks.1.1."
                       "transformer_blocks.0.attn2.to_k.weight) but 2048 in the config")
