"""LyCORIS networks (LoCon, LoHa, LoKr, with ``alpha``, ``dora_scale`` and Tucker factors) read from their
kohya-style files and applied to a diffusers pipeline as weight deltas, the way A1111 applies them.

* ``keys``: which algorithm each module of a file uses, from its tensor names (and what ``inspect`` says);
* ``deltas``: the weight-delta formulas of the LyCORIS project and A1111's ``network_*.py``;
* ``targets``: kohya / LyCORIS module names → the pipeline's layers (diffusers and original-UNet names);
* ``patcher``: merging the deltas of the active networks into those layers and restoring them bit for bit.
"""
