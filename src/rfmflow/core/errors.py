"""The exceptions rfmflow raises.

Every error a user can cause is an ``RfmflowError``; the CLI prints its message and exits
with status 1 (or 2 for usage errors) instead of showing a traceback::

    RfmflowError
    ├── SchemeError          a scheme file or dict is invalid (field path and reason)
    │   └── ExpressionError  a rule expression cannot be parsed or names an unknown column
    ├── InputError           an event file or frame cannot be used (no columns found, empty, ...)
    │   └── RejectedRowError a row is malformed and ``strict`` was asked for (line and reason)
    ├── EngineError          the computation failed in an engine (SQL error, missing driver)
    └── ModelError           a predictive model cannot be fitted or used (inputs, convergence)
        └── ModelFitError    the likelihood maximisation did not converge (with advice)
"""

from __future__ import annotations


class RfmflowError(Exception):
    """Base class of every error a user can cause."""


class SchemeError(RfmflowError):
    """A scheme is invalid. The message names the scheme, the field path and the reason."""


class ExpressionError(SchemeError):
    """A rule expression is invalid: syntax, a disallowed construct or an unknown name."""


class InputError(RfmflowError):
    """Event input cannot be used as given."""


class RejectedRowError(InputError):
    """A malformed row, raised on the first one when ``strict`` is set."""

    def __init__(self, line: int, reason: str, source: str = "") -> None:
        self.line = line
        self.reason = reason
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}line {line}: {reason}")


class EngineError(RfmflowError):
    """The computation failed inside an engine."""


class ModelError(RfmflowError):
    """A predictive model cannot be fitted or applied: bad inputs, too few customers, units."""


class ModelFitError(ModelError):
    """The maximum-likelihood fit did not converge; the message says what to try."""
