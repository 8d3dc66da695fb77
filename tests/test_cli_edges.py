"""Store and command-line edges (issue 17, point 8) and the ecosystem's vocabulary in specs (point 9): a store
that cannot be written, help and messages that keep their [bracketed] words, an interrupt message that fits
the executor, `cfg_scale`/`seed` did-you-means, seeds written as text, and dotted scorer names in TOML."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ckptbench.cli import _exit_with_status, app
from ckptbench.errors import SpecError, StoreError
from ckptbench.runner import RunOutcome
from ckptbench.spec_load import load_spec
from ckptbench.store import Store
from tests.test_broken_inputs import _one_line

# --- point 9: the ecosystem's words --------------------------------------------------------------------


@pytest.mark.parametrize(("line", "says"), [
    ("cfg_scale = 7", "unknown key 'generation.cfg_scale' — did you mean 'cfg'? ('cfg_scale' is A1111's name)"),
    ("guidance_scale = 7", "did you mean 'cfg'? ('guidance_scale' is diffusers' name)"),
    ("seed = 3", "unknown key 'generation.seed' — did you mean 'seeds'?"),
    ("num_inference_steps = 20", "did you mean 'steps'?"),
    ("CLIP_stop_at_last_layers = 2", "did you mean 'clip_skip'?"),
])
def test_a1111_and_diffusers_key_names_get_a_did_you_mean(write_spec, line: str, says: str) -> None:
    spec = write_spec(generation=f"steps = 2\n{line}")
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    assert says in str(caught.value) and "remove or rename it" in str(caught.value)


@pytest.mark.parametrize(("text", "seeds"), [('"1-4"', (1, 2, 3, 4)), ('"7"', (7,)),
                                             ('"1, 2, 10-12"', (1, 2, 10, 11, 12)), ("[3, 1]", (3, 1)),
                                             ("{from = 2, to = 4}", (2, 3, 4))])
def test_seeds_may_be_written_as_text_like_a1111s_xyz_plot(write_spec, text: str, seeds: tuple[int, ...]) -> None:
    spec = load_spec(write_spec(generation=f"steps = 2\nseeds = {text}\nlora_seeds = {text}"))
    assert spec.generation.seeds == seeds and spec.generation.lora_seeds == seeds


@pytest.mark.parametrize(("text", "says"), [
    ('"4-1"', "generation.seeds: the range '4-1' runs backwards; write the smaller seed first"),
    ('"one-four"', "generation.seeds: 'one-four' is not a list of seeds; write [1, 2, 3], \"1-4\""),
    ('"1-3, 2"', "generation.seeds: seeds repeat; each seed must appear once"),
])
def test_bad_seed_text_is_one_sentence_naming_the_field(write_spec, text: str, says: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(generation=f"steps = 2\nseeds = {text}"))
    assert says in str(caught.value)


def test_a_dotted_scorer_name_must_be_quoted_and_the_error_says_how(write_spec, tiny_models) -> None:
    scorers = ('[scorers]\nuse = ["clip-score", "hps-v2.1"]\n[scorers.clip-score]\nmodel = "{clip}"\n'
               '[scorers{table}]\nbatch_size = 2\n')
    spec = write_spec(scorers=scorers.format(clip=tiny_models["clip"], table=".hps-v2.1"))
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    assert ("[scorers.hps-v2.1] is read by TOML as a table 'hps-v2' holding a table '1' (a dot separates TOML "
            "keys); quote a scorer name that has a dot: [scorers.\"hps-v2.1\"]") in str(caught.value)
    quoted = write_spec(scorers=scorers.format(clip=tiny_models["clip"], table='."hps-v2.1"'))
    assert load_spec(quoted).scorers.options_for("hps-v2.1").batch_size == 2


# --- point 8: store and command-line edges ---------------------------------------------------------------


def test_a_store_that_cannot_be_created_is_one_message_not_a_traceback(write_spec, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    spec = write_spec()
    result = CliRunner().invoke(app, ["run", str(spec), "--store", str(tmp_path / "a-file" / "store")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert _one_line(f"error: {tmp_path / 'a-file' / 'store'}: cannot create or write the store folder here") in \
        _one_line(result.output)
    assert "choose a --store" in result.output


def test_a_read_only_store_is_not_called_broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store(tmp_path / "store").close()  # an existing, good store
    real_access = os.access
    # Tests run as root, for whom every file is writable: make the database read-only the way a user sees it.
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path).endswith("ckptbench.sqlite")
                        and mode == os.W_OK else real_access(path, mode))
    with pytest.raises(StoreError) as caught:
        Store(tmp_path / "store")
    message = str(caught.value)
    assert "cannot be written to (permission denied)" in message and "not a usable" not in message
    assert f"ckptbench report --store {tmp_path / 'store'} --out DIR" in message
    monkeypatch.undo()
    # SQLite's own read-only error (a read-only file system) gets the same sentence.
    connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda path, **kw: connect(f"{Path(path).as_uri()}?mode=ro", uri=True,
                                                                        **{k: v for k, v in kw.items()}))
    with pytest.raises(StoreError, match="cannot be written to"):
        Store(tmp_path / "store")


def test_help_and_messages_keep_their_bracketed_words() -> None:
    result = CliRunner().invoke(app, ["score", "--help"])
    assert _one_line("Spec whose [scorers] section names the scorers") in _one_line(result.output)
    run_help = _one_line(CliRunner().invoke(app, ["run", "--help"]).output)
    assert _one_line("overrides the spec's [benchmark] executor") in run_help
    assert _one_line("3 partial (some images or scores missing") in run_help


def test_the_interrupt_message_mentions_ray_only_on_ray(capsys: pytest.CaptureFixture[str]) -> None:
    for executor, mentions_ray in (("local", False), ("ray", True)):
        outcome = RunOutcome(store=Path("s"), run_id=1, interrupted=True, status="interrupted", executor=executor)
        with pytest.raises(typer.Exit) as ended:
            _exit_with_status(outcome, "ckptbench run spec.toml")
        assert ended.value.exit_code == 130
        said = capsys.readouterr().err
        assert ("Ray tasks" in said) == mentions_ray
        assert _one_line("Resume with `ckptbench run spec.toml`") in _one_line(said)


def test_inspect_exits_non_zero_when_it_refuses_even_with_allow_pickle(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, ("true",))

    import torch

    torch.save({"weight": torch.zeros(2), "payload": Payload()}, path)
    for args in ([], ["--allow-pickle"], ["--allow-pickle", "--json"]):
        result = CliRunner().invoke(app, ["inspect", str(path), *args])
        assert result.exit_code == 2, (args, result.output)
