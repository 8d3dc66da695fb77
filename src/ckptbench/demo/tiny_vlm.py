"""Tiny random-weight image-text-to-text models (Qwen2-VL, Qwen2.5-VL, CLIP-FlanT5) built with the real
transformers classes and saved as the real folder layouts (``config.json``, ``model.safetensors``,
``generation_config.json``, processor, tokenizer, chat template), for VQAScore's tests and the demo.

The tokenizer is a byte-level BPE trained here on a few sentences, with the Qwen special tokens the
processor and chat template use; the chat template writes Qwen2-VL's conversation format (system turn,
``<|im_start|>user`` with ``<|vision_start|><|image_pad|><|vision_end|>`` before the text, then the
assistant's turn). The weights are random: the numbers only show that the machinery works.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                       "<|image_pad|>", "<|video_pad|>"]
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
_CORPUS = ["Does this figure show a red cube on a table? Please answer yes or no.", "Yes", "No", "yes", "no",
           "You are a helpful assistant.", "portrait of an old fisherman", "a lighthouse at dusk", "watercolor fox",
           "isometric room", "a cute corgi", "system user assistant"]
TINY_QWEN_TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "num_key_value_heads": 1, "max_position_embeddings": 4096, "rms_norm_eps": 1e-6,
                  "rope_scaling": {"type": "mrope", "mrope_section": [4, 2, 2]}, "rope_theta": 10000.0}
TINY_QWEN_VISION = {"depth": 2, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 2, "patch_size": 14,
                    "spatial_merge_size": 2, "temporal_patch_size": 2, "in_channels": 3}


def tiny_qwen_tokenizer(folder: Path) -> Path:
    """A byte-level BPE tokenizer with Qwen's special tokens, saved as ``tokenizer.json`` + its config."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=QWEN_SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(_CORPUS, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    return folder


def qwen_vl_processor(folder: Path, family: str = "qwen2_vl") -> Any:
    """The tiny tokenizer with a Qwen2-VL image processor and chat template, saved as the processor files of
    ``folder``; returns the processor."""
    from transformers import (
        AutoProcessor,
        AutoTokenizer,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen_tokenizer(folder))
    image_processor = Qwen2VLImageProcessor(min_pixels=4 * 28 * 28, max_pixels=16384 * 28 * 28)
    processor_class = Qwen2VLProcessor if family == "qwen2_vl" else Qwen2_5_VLProcessor
    processor_class(image_processor=image_processor, tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(),
                    chat_template=QWEN_CHAT_TEMPLATE).save_pretrained(folder)
    return AutoProcessor.from_pretrained(folder)


def qwen_vl_model(processor: Any, family: str = "qwen2_vl", seed: int = 0, text: dict[str, Any] | None = None,
                  vision: dict[str, Any] | None = None) -> Any:
    """A random Qwen2-VL / Qwen2.5-VL for ``processor``'s tokens: tiny by default, or with the given text and
    vision settings (real sizes for benchmarks; ``vocab_size`` may exceed the tiny tokenizer's)."""
    from transformers import GenerationConfig

    tokenizer = processor.tokenizer
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in QWEN_SPECIAL_TOKENS}
    text = {**TINY_QWEN_TEXT, "vocab_size": len(tokenizer), **(text or {}), "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"]}
    tokens = {"image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
              "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"]}
    torch.manual_seed(seed)
    if family == "qwen2_vl":
        from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

        vision = {**TINY_QWEN_VISION, "hidden_size": text["hidden_size"], **(vision or {})}
        model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(text_config=text, vision_config=vision, **tokens))
    elif family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": 14,
                  "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56, "fullatt_block_indexes": [1],
                  "in_channels": 3, **(vision or {}), "out_hidden_size": text["hidden_size"]}
        model = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision,
                                                                    **tokens))
    else:
        raise ValueError(f"unknown family {family!r}")
    with torch.no_grad():  # the default init is nearly flat; a wider spread makes the answers differ by image
        for name, parameter in model.named_parameters():
            if parameter.ndim >= 2 and "norm" not in name:
                parameter.normal_(0.0, 2.0 / parameter.shape[-1] ** 0.5)
    # Sampling settings as Qwen releases ship them; VQAScore decodes greedily, so only the repetition penalty
    # (also as in some releases) acts on its number.
    model.generation_config = GenerationConfig(bos_token_id=text["bos_token_id"], eos_token_id=text["eos_token_id"],
                                               pad_token_id=ids["<|endoftext|>"], repetition_penalty=1.05,
                                               do_sample=True, temperature=0.01, top_k=1, top_p=0.001)
    return model.eval()


def save_tiny_qwen_vl(folder: Path, seed: int = 0, family: str = "qwen2_vl") -> Path:
    """A random tiny Qwen2-VL (``family = "qwen2_vl"``) or Qwen2.5-VL (``"qwen2_5_vl"``) as a model folder."""
    processor = qwen_vl_processor(folder, family)
    qwen_vl_model(processor, family, seed).save_pretrained(folder, safe_serialization=True)
    return folder


_T5_CORPUS = ["Yes", "No", "Yes.", "A chat between a curious user and an artificial intelligence assistant.",
              "The assistant gives helpful, detailed, and polite answers to the user's questions.",
              "USER: Does this figure show a red cube on a table? Please answer yes or no. ASSISTANT:",
              "portrait of an old fisherman", "a lighthouse at dusk", "watercolor fox", "isometric room"]


def tiny_t5_tokenizer(folder: Path) -> Path:
    """A SentencePiece-Unigram tokenizer like T5's (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, ``</s>`` appended to
    every text), trained on a few sentences and saved as ``tokenizer.json``."""
    from tokenizers import SentencePieceUnigramTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(_T5_CORPUS * 4, vocab_size=160, special_tokens=["<pad>", "</s>", "<unk>"],
                                unk_token="<unk>", show_progress=False)
    unigram.post_processor = TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=unigram._tokenizer, eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(folder)
    return folder


def save_tiny_clip_flant5(folder: Path, vision_folder: Path, seed: int = 0, vision_in_checkpoint: bool = True
                          ) -> Path:
    """A random CLIP-FlanT5 as its release lays it out: ``config.json`` (``model_type`` ``clip_t5`` with the
    ``mm_*`` settings, ``mm_vision_tower`` pointing at ``vision_folder``), ``model.safetensors`` with the
    reference's keys (T5's own, ``vision_tower.vision_tower.*`` unless ``vision_in_checkpoint`` is false,
    ``mm_projector.0/2.*``) and the T5 tokenizer; ``vision_folder`` gets a tiny CLIP vision tower (3 layers,
    28 px in 14 px patches) with its image processor."""
    from safetensors.torch import save_file
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        T5Config,
        T5ForConditionalGeneration,
    )

    torch.manual_seed(seed)
    vision = CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_attention_heads=2,
                                              num_hidden_layers=3, image_size=28, patch_size=14))
    vision.save_pretrained(vision_folder, safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(vision_folder)
    tokenizer = AutoTokenizer.from_pretrained(tiny_t5_tokenizer(folder))
    t5_config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
                         num_heads=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                         decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    t5 = T5ForConditionalGeneration(t5_config)
    with torch.no_grad():  # T5's untied head starts with logits of spread ≈ √d_model: answers become certain
        t5.lm_head.weight.mul_(0.05)
    projector = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.GELU(), torch.nn.Linear(32, 32))
    state = {key: value.clone().contiguous() for key, value in t5.state_dict().items()}
    if vision_in_checkpoint:
        state.update({f"vision_tower.vision_tower.{key}": value.clone().contiguous()
                      for key, value in vision.state_dict().items()})
    state.update({f"mm_projector.{key}": value.clone().contiguous() for key, value in projector.state_dict().items()})
    save_file(state, str(folder / "model.safetensors"))
    config = {**t5_config.to_dict(), "model_type": "clip_t5", "architectures": ["CLIPT5ForConditionalGeneration"],
              "mm_vision_tower": str(vision_folder), "mm_hidden_size": 32, "mm_projector_type": "mlp2x_gelu",
              "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch", "image_aspect_ratio": "pad"}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder
