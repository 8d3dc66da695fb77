"""Errors that reach the user as one clear sentence instead of a traceback."""

from __future__ import annotations


class CkptbenchError(Exception):
    """Base for every error the command line prints as a plain message (no traceback)."""


class SpecError(CkptbenchError):
    """The benchmark spec is invalid: the message names the file, the field and the fix."""


class ModelFileError(CkptbenchError):
    """A model file is missing, unreadable, unsafe or of the wrong kind."""


class WeightsUnavailableError(CkptbenchError):
    """Weights a scorer or generator needs are neither local nor in the Hugging Face cache."""


class StoreError(CkptbenchError):
    """The result store is locked, corrupt or from an incompatible version."""


class SuiteError(CkptbenchError):
    """A suite file or an external prompt source is missing, malformed or incomplete."""


class DataImportError(CkptbenchError):
    """Results made elsewhere (e.g. the GhostReview release) cannot be read into the store."""


class DiskFullError(CkptbenchError):
    """A write failed for lack of space; nothing was half-written and the run can be resumed."""
