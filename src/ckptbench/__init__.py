"""ckptbench: benchmark Stable Diffusion checkpoints with pinned scorers and honest statistics."""

__version__ = "0.1.0"
