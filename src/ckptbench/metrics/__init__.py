"""Scorers: the contract, the registry, shared backbones and one module per scorer family."""
