"""The CLIP BPE tokenizer, built offline from the vocabulary file that open_clip ships.

Stable Diffusion 1.x/2.x/XL and every OpenAI-CLIP-based scorer use the same 49,408-token BPE vocabulary.
open_clip ships it (``bpe_simple_vocab_16e6.txt.gz``); the Hugging Face ``vocab.json``/``merges.txt``
pair is a plain re-encoding of it, so we can build an identical ``CLIPTokenizer`` without a hub.

The OpenCLIP text encoders (SD2's ViT-H, SDXL's second encoder ViT-bigG) differ in one thing that
changes pixels: OpenCLIP pads the 77 positions with token id 0 ('!'), OpenAI CLIP with <|endoftext|>.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import shutil
from pathlib import Path

from transformers import CLIPTokenizer

CONTEXT_LENGTH = 77
OPEN_CLIP_PAD = "!"  # token id 0: what OpenCLIP's tokenizer pads with (SD2, SDXL's tokenizer_2)
END_OF_TEXT = "<|endoftext|>"
_MERGE_COUNT = 49152 - 256 - 2  # as in the original CLIP tokenizer


def _bpe_file() -> Path:
    import open_clip  # only to find its vocabulary file, once per machine (the files are cached); it is slow to import

    return Path(os.path.dirname(open_clip.__file__)) / "bpe_simple_vocab_16e6.txt.gz"


def write_clip_tokenizer_files(folder: Path) -> Path:
    """Write ``vocab.json``, ``merges.txt`` and the tokenizer configs into ``folder``; return it."""
    from open_clip.tokenizer import bytes_to_unicode

    folder.mkdir(parents=True, exist_ok=True)
    with gzip.open(_bpe_file()) as stream:
        lines = stream.read().decode("utf-8").split("\n")
    merges = lines[1 : _MERGE_COUNT + 1]
    byte_symbols = list(bytes_to_unicode().values())
    vocab = byte_symbols + [symbol + "</w>" for symbol in byte_symbols]
    vocab += ["".join(merge.split()) for merge in merges] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                  model_max_length=CONTEXT_LENGTH, pad_token="<|endoftext|>").save_pretrained(folder)
    return folder


def _cache_folder() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "ckptbench" / "clip-bpe-16e6"


@functools.lru_cache(maxsize=2)
def clip_tokenizer(pad_token: str = END_OF_TEXT) -> CLIPTokenizer:
    """The SD / OpenAI CLIP tokenizer (77 tokens); pads with <|endoftext|>, or '!' for OpenCLIP encoders."""
    folder = _cache_folder()
    if not (folder / "tokenizer_config.json").exists():
        staging = folder.with_name(folder.name + f".tmp{os.getpid()}")
        write_clip_tokenizer_files(staging)
        try:
            staging.rename(folder)
        except OSError:  # another process won the race; its copy is identical
            shutil.rmtree(staging, ignore_errors=True)
    return CLIPTokenizer.from_pretrained(str(folder), pad_token=pad_token)
