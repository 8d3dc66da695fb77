"""kid, fid and cmmd against reference implementations and hand computations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cleanfid.fid import kernel_distance
from PIL import Image
from scipy import linalg
from tests.hand_computed import parity

from ckptbench.metrics.backbones import resolve_backbone
from ckptbench.metrics.base import BackboneRequest
from ckptbench.metrics.distribution import FID, cmmd, frechet_inception_distance, kernel_inception_distance
from ckptbench.metrics.inception import FIDInceptionBackbone, fid_inception
from ckptbench.score_folder import score_folder
from ckptbench.spec import ScorerOptions, ScorersSpec
from ckptbench.store import Store


def test_kid_equals_clean_fid_with_the_same_seed() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(60, 32))
    references = rng.normal(loc=0.3, size=(45, 32))
    np.random.seed(0)  # clean-fid draws its subsets from NumPy's global state
    expected = kernel_distance(features, references, num_subsets=100, max_subset_size=1000)
    assert kernel_inception_distance(features, references, seed=0) == pytest.approx(expected, rel=1e-10)


def test_kid_of_a_set_against_itself_is_about_zero() -> None:
    rng = np.random.default_rng(2)
    features = rng.normal(size=(200, 64))
    shifted = kernel_inception_distance(features, features + 0.5)
    itself = kernel_inception_distance(features, features)
    # Identical sets share their samples, so the cross term holds k(x, x): the unbiased estimator is then
    # exactly −2·(mean k(x, x) − mean k(x, x'))/n, vanishing as 1/n — by hand:
    kernel = (features @ features.T / 64 + 1) ** 3
    n = len(features)
    diagonal, off_diagonal = np.mean(np.diag(kernel)), (kernel.sum() - np.trace(kernel)) / (n * (n - 1))
    assert itself == pytest.approx(-2 * (diagonal - off_diagonal) / n, rel=1e-9)
    assert abs(itself) < 0.1 * shifted
    # Two independent samples of one distribution: ≈0 (the estimator is unbiased).
    other = rng.normal(size=(200, 64))
    assert abs(kernel_inception_distance(features, other)) < 0.01 * shifted


def test_fid_equals_the_closed_form_and_a_hand_computation() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4000, 4)) @ np.diag([1.0, 2.0, 0.5, 1.5])
    b = rng.normal(loc=1.0, size=(3000, 4))
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    by_hand = float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * linalg.sqrtm(cov_a @ cov_b).real))
    assert frechet_inception_distance(a, b) == pytest.approx(by_hand, rel=1e-8)
    assert frechet_inception_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_fid_is_refused_below_2048_images_with_a_pointer_to_kid() -> None:
    message = FID(ScorerOptions()).check_sizes(960, 5000)
    assert message is not None and "2,048" in message and "kid" in message
    assert FID(ScorerOptions()).check_sizes(2048, 2048) is None


def test_cmmd_by_hand() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(7, 5)), rng.normal(size=(9, 5))
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    k = lambda a, b: np.mean([[np.exp(-np.sum((p - q) ** 2) / 200.0) for q in b] for p in a])  # noqa: E731
    assert cmmd(x, y) == pytest.approx(1000 * (k(yn, yn) + k(xn, xn) - 2 * k(xn, yn)), rel=1e-10)
    assert cmmd(x, x) == pytest.approx(0.0, abs=1e-12)


def _clean_fid_features(folder: Path, network: torch.nn.Module) -> np.ndarray:
    """clean-fid's own "clean" feature pipeline (cleanfid/fid.py get_folder_features: ResizeDataset with the
    clean PIL-bicubic resizer, then cleanfid/inception_torchscript.py InceptionV3W.forward, which feeds
    (x − 128)/128 to the network) with our FID Inception in place of its TorchScript archive."""
    from cleanfid.fid import get_folder_features
    from cleanfid.inception_torchscript import InceptionV3W

    wrapper = InceptionV3W.__new__(InceptionV3W)  # its __init__ would download the TorchScript archive
    torch.nn.Module.__init__(wrapper)
    wrapper.layers, wrapper.resize_inside = network, False
    # Batches of 16, as the scorer's default: float32 kernels round differently for other batch sizes.
    return get_folder_features(str(folder), model=wrapper, num_workers=0, batch_size=16,
                               device=torch.device("cpu"), mode="clean", verbose=False)


def test_kid_equals_clean_fid_clean_mode_end_to_end(tiny_scorer_models: dict[str, Path], fid_inception_file: Path,
                                                    tmp_path: Path) -> None:
    """Reference: clean-fid's compute_kid in "clean" mode (features.py, resize.py, fid.py), on the same random
    FID Inception weights and images."""
    from cleanfid.fid import kernel_distance

    from ckptbench.metrics.inception import pool3_network

    model = fid_inception()
    model.load_state_dict(torch.load(fid_inception_file, map_location="cpu", weights_only=True))
    network = pool3_network(model).eval()
    images, references = tiny_scorer_models["images"], tiny_scorer_models["references"]
    expected_images, expected_references = _clean_fid_features(images, network), _clean_fid_features(references,
                                                                                                   network)
    options = ScorerOptions(model=str(fid_inception_file), references=str(references))
    result = score_folder(images, ScorersSpec(use=("kid",), options={"kid": options}), Store(tmp_path / "store"),
                          torch.device("cpu"))
    np.random.seed(0)
    # In float64, as our KID computes (clean-fid computes in the features' dtype; float32 cancellation in
    # the kernel sums would otherwise dominate the comparison of the feature pipelines).
    expected = kernel_distance(expected_images.astype(np.float64), expected_references.astype(np.float64),
                               num_subsets=100, max_subset_size=1000)
    (value,) = result.frame["value"]
    assert expected != 0
    parity("kid", [value], [expected])
    assert value == pytest.approx(expected, rel=1e-4)

    # The features themselves: ours from the backbone, clean-fid's from its pipeline.
    spec = resolve_backbone(BackboneRequest("fid-inception", str(fid_inception_file)), "fp32", "kid", None)
    backbone = FIDInceptionBackbone(spec, torch.device("cpu"))
    ours = backbone.embed_images([Image.open(p).convert("RGB") for p in sorted(images.glob("*.png"))], {"pool3"})
    # Random weights make tiny pool3 values (≈1e-7): compare relative to their scale.
    scale = np.abs(expected_images).max()
    assert scale > 0
    assert np.abs(ours["pool3"] - expected_images).max() / scale < 1e-4
    # pytorch-fid's scaling (version 1) gives other features: the test tells the two apart.
    with torch.no_grad():
        legacy = network(network_input_legacy(images, backbone.resize)).numpy()
    assert np.abs(legacy - expected_images).max() / scale > 1e-3


def network_input_legacy(folder: Path, resize) -> torch.Tensor:
    resized = np.stack([resize(np.asarray(Image.open(p).convert("RGB"))) for p in sorted(folder.glob("*.png"))])
    return torch.from_numpy(resized).permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0
