"""Model files: resolving and hashing checkpoints, bundled configs, layouts, tiny random models."""
