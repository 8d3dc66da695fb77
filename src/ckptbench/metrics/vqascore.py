"""``vqascore``: VQAScore (Lin et al. 2024, "Evaluating Text-to-Visual Generation with Image-to-Text
Generation"; linzhiqiu/t2v_metrics), prompt adherence as a vision-language model's answer.

Score = P("Yes" | image, 'Does this figure show "{prompt}"? Please answer yes or no.'): the probability the
model gives "Yes" as the first token of its answer (0–1, higher is better). It follows compositional
prompts (counting, spatial relations, attribute binding, negation) far better than CLIPScore, which reads
a prompt as a bag of words. The model families (Qwen2-VL, Qwen2.5-VL, CLIP-FlanT5) and file handling are
in ``vqa_backbone``; the default is Qwen2.5-VL-7B-Instruct, the default of t2v_metrics' Qwen wrapper
(numbers from different models are not comparable: the model's files are part of the score key). The
question is the paper's (and t2v_metrics' CLIP-FlanT5 default); t2v_metrics' Qwen wrapper defaults to the
shorter 'Does this image show "{}"?', so its Qwen numbers match ours when it is given this question. The
prompt is stripped of A1111 syntax first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ckptbench.metrics.base import BackboneRequest, FeatureBatch, ImageScorer
from ckptbench.prompt import strip_prompt_syntax

QUESTION = 'Does this figure show "{}"? Please answer yes or no.'
ANSWER = "Yes"


class VQAScore(ImageScorer):
    """P("Yes") of a vision-language model asked whether the image shows the prompt (0–1)."""

    name = "vqascore"
    default_model = "Qwen/Qwen2.5-VL-7B-Instruct"
    needs_prompt = True
    joint = True
    features = ()

    def backbone_request(self) -> BackboneRequest:
        return BackboneRequest(kind=self.backbone_kind, model=self.model_source, allow_pickle=self.options.allow_pickle)

    def extra_identity(self) -> dict[str, Any]:
        return {"question": QUESTION, "answer": ANSWER}

    def text_for(self, prompt: str) -> str:
        return strip_prompt_syntax(prompt)

    def score(self, batch: FeatureBatch) -> np.ndarray:
        assert batch.images is not None and batch.backbone is not None
        return np.asarray(batch.backbone.score_pairs(batch.images, batch.texts), dtype=np.float64)
