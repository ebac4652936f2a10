"""Exceptions raised by aiqc.

Every error caused by a bad argument is a :class:`ValidationError`, which is also a
``ValueError``; its message names the parameter, what was expected and what was received.
Validation happens before anything is written, so a ValidationError leaves the database
exactly as it was.
"""

from __future__ import annotations

__all__ = [
    "AIQCError",
    "ValidationError",
    "MissingExtraError",
    "DatabaseError",
    "NotFoundError",
]


class AIQCError(Exception):
    """Base class of every error raised by aiqc."""


class ValidationError(AIQCError, ValueError):
    """A bad argument. Raised before any write."""

    @classmethod
    def expected(cls, parameter: str, expected: str, received: object) -> "ValidationError":
        """Build the house-style message: ``parameter: expected ...; received ...``."""
        return cls(f"{parameter}: expected {expected}; received {_show(received)}.")


class MissingExtraError(AIQCError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


class DatabaseError(AIQCError):
    """The database cannot be opened, or was written by an incompatible aiqc."""


class NotFoundError(AIQCError, LookupError):
    """A record asked for by id does not exist."""


def _show(value: object) -> str:
    """A short, unambiguous rendering of a received value for error messages."""
    if isinstance(value, type):
        return f"the class {value.__name__}"
    text = repr(value)
    if len(text) > 120:
        text = text[:117] + "..."
    if isinstance(value, (str, int, float, bool, list, tuple, dict, type(None))):
        return text
    return f"{text} (type {type(value).__name__})"
