"""Suites of cases: what to generate, independent of checkpoint and seed."""

from ckptbench.suites.case import Case

__all__ = ["Case"]
