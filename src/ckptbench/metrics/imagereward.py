"""``imagereward``: ImageReward v1.0 (Xu et al. 2023, THUDM/ImageReward), human preference for a prompt.

Reference definition (``ImageReward/ImageReward.py`` ``score``): BLIP reads the image and the prompt
together (the text encoder cross-attends to the ViT's tokens), an MLP maps the [CLS] output to a reward,
and the reward is normalised with the mean and std of its training data, so 0 is the average training
image and one unit is one standard deviation. The model, its file layout and preprocessing are restated
in ``imagereward_model``. Like the other preference scores it ranks images *for one prompt*; compare
checkpoints on the same prompts (the analysis does). The prompt is stripped of A1111 syntax first; prompts
longer than 35 BERT tokens are truncated, as in the reference, and counted in the results.
"""

from __future__ import annotations

import numpy as np

from ckptbench.metrics.base import BackboneRequest, FeatureBatch, ImageScorer
from ckptbench.prompt import strip_prompt_syntax


class ImageReward(ImageScorer):
    """ImageReward v1.0: BLIP image–text reward, normalised as the reference does (≈ −2…2)."""

    name = "imagereward"
    default_model = "THUDM/ImageReward"
    tokenizer_source = "bert-base-uncased"
    needs_prompt = True
    joint = True
    features = ()

    def backbone_request(self) -> BackboneRequest:
        return BackboneRequest(kind=self.backbone_kind, model=self.model_source, processor=self.tokenizer_source,
                               allow_pickle=self.options.allow_pickle)

    def text_for(self, prompt: str) -> str:
        return strip_prompt_syntax(prompt)

    def score(self, batch: FeatureBatch) -> np.ndarray:
        assert batch.images is not None and batch.backbone is not None
        return np.asarray(batch.backbone.score_pairs(batch.images, batch.texts), dtype=np.float64)
