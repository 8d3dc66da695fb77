"""Spec keys for model files: arch, prediction, vae (per checkpoint and per run), allow_pickle."""

from __future__ import annotations

import pytest

from ckptbench.errors import SpecError
from ckptbench.spec_load import load_spec


def _checkpoint(tiny_models, extra: str) -> str:
    return f'[[checkpoints]]\nname = "a"\npath = "{tiny_models["single_a"]}"\n{extra}\n'


def test_model_keys_load_and_resolve_paths(write_spec, tiny_models, tmp_path) -> None:
    (tmp_path / "vae.safetensors").write_bytes(b"")
    spec = load_spec(write_spec(
        checkpoints=_checkpoint(tiny_models, 'arch = "sd2-v"\nvae = "vae.safetensors"\nallow_pickle = true'),
        generation='vae = "vae.safetensors"'))
    checkpoint = spec.checkpoints[0]
    assert (checkpoint.arch, checkpoint.prediction, checkpoint.allow_pickle) == ("sd2-v", None, True)
    assert checkpoint.vae == (tmp_path / "vae.safetensors").resolve() == spec.generation.vae


@pytest.mark.parametrize(
    ("extra", "generation", "expected"),
    [('arch = "sd3"', "", "checkpoints[0].arch"),
     ('prediction = "v-pred"', "", "checkpoints[0].prediction"),
     ('arch = "sd2-v"\nprediction = "epsilon"', "", "drop one of them"),
     ('vae = "missing-vae.safetensors"', "", "checkpoints[0].vae ('a')"),
     ("", 'vae = "missing-vae"', "generation.vae"),
     ('allow_pickle = "yes"', "", "checkpoints[0].allow_pickle")],
)
def test_bad_model_keys(write_spec, tiny_models, extra: str, generation: str, expected: str) -> None:
    path = write_spec(checkpoints=_checkpoint(tiny_models, extra), generation=generation)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert expected in str(caught.value) and str(path) in str(caught.value)
