"""The FID Inception backbone (``fid-inception``): 2048-d pool3 features for KID and FID.

The network is the TensorFlow FID Inception v3 as ported to PyTorch by pytorch-fid (torchvision's
Inception3 with the FID blocks that clean-fid ships in ``cleanfid.inception_pytorch``), with the weights
file ``pt_inception-2015-12-05-6726825d.pth`` (a plain state dict, read with ``weights_only=True``)
from the torch hub cache or a local path. Resizing follows clean-fid's "clean" mode: each channel of the
uint8 image is resized to 299×299 as float with PIL's bicubic filter (``cleanfid.resize.make_resizer``),
then mapped to the network's input range as clean-fid and the original TensorFlow graph do,
(x − 128)/128 (``cleanfid/inception_torchscript.py``; pytorch-fid's x/255·2 − 1 differs by 1/255 in scale
and offset, which moved KID by 2.2 % and FID by 1.8 %). clean-fid itself runs a TorchScript port of the
same TF graph; we do not load TorchScript archives, so values can differ from clean-fid's by the port's
small numerical differences.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ckptbench.errors import ModelFileError, WeightsUnavailableError
from ckptbench.hashing import DigestCache, sha256_file
from ckptbench.metrics.base import BackboneRequest, BackboneSpec

KIND = "fid-inception"
HUB_SOURCE = "torch-hub:pt_inception-2015-12-05"
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
SIZE = 299


def resolve(request: BackboneRequest, dtype: str, scorer: str, cache: DigestCache | None) -> BackboneSpec:
    if request.model == HUB_SOURCE:
        path = Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE
        if not path.is_file():
            raise WeightsUnavailableError(
                f"scorer '{scorer}': the FID Inception weights are not in the torch hub cache ({path}); download "
                f"{WEIGHTS_URL} there, or set [scorers.{scorer}] model = \"<path to {WEIGHTS_FILE}>\".")
    else:
        path = Path(request.model).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(f"scorer '{scorer}': Inception weights file {request.model} does not "
                                          f"exist; fix [scorers.{scorer}] model.")
    return BackboneSpec(kind=KIND, source=request.model, location=str(path),
                        weights={path.name: sha256_file(path, cache)}, dtype=dtype,
                        preprocessing=f"clean-fid resize: per-channel float PIL bicubic to {SIZE}×{SIZE}, "
                                      "then (x − 128)/128")


def fid_inception() -> nn.Module:
    """The FID Inception v3 architecture (random weights until a state dict is loaded)."""
    from cleanfid.inception_pytorch import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2
    from torchvision.models.inception import Inception3

    model = Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    model.Mixed_5b = FIDInceptionA(192, pool_features=32)
    model.Mixed_5c = FIDInceptionA(256, pool_features=64)
    model.Mixed_5d = FIDInceptionA(288, pool_features=64)
    model.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    model.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    model.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    model.Mixed_7b = FIDInceptionE_1(1280)
    model.Mixed_7c = FIDInceptionE_2(2048)
    return model


def pool3_network(model: Any) -> nn.Sequential:
    """Input (N, 3, 299, 299) in [-1, 1] → pool3 features (N, 2048), as pytorch-fid's block 3 output."""
    return nn.Sequential(
        model.Conv2d_1a_3x3, model.Conv2d_2a_3x3, model.Conv2d_2b_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
        model.Conv2d_3b_1x1, model.Conv2d_4a_3x3, nn.MaxPool2d(kernel_size=3, stride=2),
        model.Mixed_5b, model.Mixed_5c, model.Mixed_5d, model.Mixed_6a, model.Mixed_6b, model.Mixed_6c,
        model.Mixed_6d, model.Mixed_6e, model.Mixed_7a, model.Mixed_7b, model.Mixed_7c,
        nn.AdaptiveAvgPool2d(output_size=(1, 1)), nn.Flatten())


def network_input(images: list[Image.Image], resize: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    """(N, 3, 299, 299) float32 network input: clean-fid's resize, then (x − 128)/128 as clean-fid feeds it."""
    resized = np.stack([resize(np.asarray(image.convert("RGB"))) for image in images])
    return (torch.from_numpy(resized).permute(0, 3, 1, 2).float() - 128.0) / 128.0


class FIDInceptionBackbone:
    def __init__(self, spec: BackboneSpec, device: torch.device) -> None:
        from cleanfid.resize import make_resizer

        from ckptbench.metrics.backbones import autocast

        self.spec = spec
        self.device = device
        model = fid_inception()
        try:
            model.load_state_dict(torch.load(spec.location, map_location="cpu", weights_only=True), strict=True)
        except Exception as error:
            raise ModelFileError(f"{spec.location} is not the FID Inception state dict ({type(error).__name__}); "
                                 f"give {WEIGHTS_FILE}.") from None
        self.network = pool3_network(model).eval().to(device)
        self.resize = make_resizer("PIL", False, "bicubic", (SIZE, SIZE))
        self.meta: dict[str, Any] = {}
        self._autocast = lambda: autocast(device, spec.dtype)

    def prepare_images(self, images: list[Image.Image]) -> torch.Tensor:
        return network_input(images, self.resize)

    def embed_images(self, images: list[Image.Image], wanted: set[str]) -> dict[str, np.ndarray]:
        return self.embed_pixels(self.prepare_images(images), wanted)

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor, wanted: set[str]) -> dict[str, np.ndarray]:
        pixels = pixels.to(self.device)
        with self._autocast():
            features = self.network(pixels)
        return {"pool3": features.float().cpu().numpy()}

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError("the Inception backbone has no text tower")
