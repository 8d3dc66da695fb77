"""The demo: ``ckptbench demo`` (``command``) and the tiny random-weight models it and the tests build.

``tiny`` (Stable Diffusion pipelines, CLIP, aesthetic heads), ``tiny_files`` (VAE, LoRA, embedding files),
``tiny_lora`` (LoRAs in every layout) and ``tiny_scorers`` (open_clip, kenjiqq, VGG, Inception) build models
with the real classes and save them in the real file formats; nothing in the benchmark itself imports them.
"""
