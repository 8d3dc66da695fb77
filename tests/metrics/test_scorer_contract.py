"""Every registered scorer, run through the real engine on tiny models: finite values of the right
length, a declared direction and scale, and the sha256 of every weight file it loaded."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ckptbench.metrics.distribution import FID
from ckptbench.metrics.registry import SCORERS
from ckptbench.score_folder import score_folder
from ckptbench.spec import ScorerOptions, ScorersSpec
from ckptbench.store import Store

SHA256 = re.compile(r"^[0-9a-f]{64}$")
PROMPTS = ["a red cube on a table", "portrait of an old fisherman", "(cute corgi:1.2) <lora:x:0.5>",
           "isometric room", "a lighthouse at dusk", "watercolor fox"]


@pytest.fixture
def prompted_images(tiny_scorer_models: dict[str, Path], tmp_path: Path) -> Path:
    """The tiny images, each with a sidecar prompt."""
    folder = tmp_path / "images"
    folder.mkdir()
    for index, source in enumerate(sorted(tiny_scorer_models["images"].glob("*.png"))):
        (folder / source.name).write_bytes(source.read_bytes())
        (folder / source.with_suffix(".txt").name).write_text(PROMPTS[index])
    return folder


@pytest.mark.parametrize("name", sorted(SCORERS))
def test_every_scorer_honours_the_contract(name: str, prompted_images: Path, tiny_scorer_options,
                                           fid_inception_file: Path, tmp_path: Path) -> None:
    options = tiny_scorer_options(name)
    if name in ("kid", "fid"):
        options["model"] = str(fid_inception_file)
    spec = ScorersSpec(use=(name,), options={name: ScorerOptions(**options)})
    store = Store(tmp_path / "store")
    result = score_folder(prompted_images, spec, store, torch.device("cpu"))
    cls = SCORERS[name].load()
    assert isinstance(cls.higher_is_better, bool) and cls.scale and cls.description and cls.version

    from ckptbench.metrics.engine import prepare_scorers

    (prepared,) = prepare_scorers(spec, torch.device("cpu"), store)
    assert prepared.info.weights, "a scorer must record the files it loads"
    assert all(SHA256.match(digest) for digest in prepared.info.weights.values())
    assert prepared.info.dtype == "fp32" and prepared.info.level == cls.level

    values = result.frame["value"].to_numpy(dtype=float)
    if name == "fid":
        # 6 images are far below FID's minimum: refused with a message that points to KID.
        assert any("2,048" in failure and "kid" in failure for failure in result.failures)
        features = np.random.default_rng(0).normal(size=(300, 16))
        assert np.isfinite(FID(ScorerOptions()).score_set(features, features + 0.5))
        return
    assert not result.failures, result.failures
    expected = 1 if cls.level == "set" else len(PROMPTS)
    assert len(values) == expected
    assert np.isfinite(values).all()
