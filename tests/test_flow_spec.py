"""Spec keys of the flow families: text_encoders, t5_tokenizer, distilled_cfg, and zero_terminal_snr's type."""

from __future__ import annotations

from pathlib import Path

import pytest

from ckptbench.errors import SpecError
from ckptbench.spec_load import load_spec


def test_paths_are_resolved_from_the_spec_folder_and_checked(write_spec, tmp_path: Path) -> None:
    (tmp_path / "clip_l.safetensors").write_bytes(b"")
    (tmp_path / "t5").mkdir()
    checkpoints = ('[[checkpoints]]\nname = "f"\npath = "clip_l.safetensors"\n'
                   'text_encoders = ["clip_l.safetensors"]\nt5_tokenizer = "t5"\n')
    spec = load_spec(write_spec(checkpoints=checkpoints, generation="distilled_cfg = 2.5"))
    (checkpoint,) = spec.checkpoints
    assert checkpoint.text_encoders == ((tmp_path / "clip_l.safetensors").resolve(),)
    assert checkpoint.t5_tokenizer == (tmp_path / "t5").resolve() and spec.generation.distilled_cfg == 2.5
    missing = checkpoints.replace('["clip_l.safetensors"]', '["t5xxl.safetensors"]')
    with pytest.raises(SpecError, match=r"checkpoints\[0\]\.text_encoders\[0\] \('f'\): .*t5xxl.safetensors does not"):
        load_spec(write_spec(checkpoints=missing))


def test_zero_terminal_snr_must_be_a_boolean(write_spec, tiny_models) -> None:
    checkpoints = f'[[checkpoints]]\nname = "a"\npath = "{tiny_models["single_a"]}"\nzero_terminal_snr = "yes"\n'
    with pytest.raises(SpecError, match=r"checkpoints\[0\]\.zero_terminal_snr"):
        load_spec(write_spec(checkpoints=checkpoints))
