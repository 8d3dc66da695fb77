"""The command line's commands, in groups (``ckptbench.cli`` assembles them)."""
