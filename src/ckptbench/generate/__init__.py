"""Image generation: the Generator contract, the diffusers backend, samplers."""
