"""Suites of cases: what to generate, independent of checkpoint and seed."""

from ckptbench.suites.case import Case, cases_from_spec

__all__ = ["Case", "cases_from_spec"]
