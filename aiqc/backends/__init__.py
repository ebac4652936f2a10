"""Deep-learning backends. This registry is the only place that knows their names;
importing it imports neither TensorFlow nor torch."""

from __future__ import annotations

import enum
import importlib
from functools import lru_cache

from aiqc.backends._base import Backend, Defaults
from aiqc.exceptions import ValidationError

__all__ = ["BACKENDS", "Backend", "Defaults", "Library", "get_backend"]


class Library(str, enum.Enum):
    """The ``library`` of an experiment; compares equal to its string value."""

    KERAS = "keras"
    PYTORCH = "pytorch"

    def __str__(self) -> str:
        return self.value


BACKENDS = {
    Library.KERAS: "aiqc.backends.keras:KerasBackend",
    Library.PYTORCH: "aiqc.backends.pytorch:TorchBackend",
}


@lru_cache(maxsize=None)
def _load(library: Library) -> Backend:
    module, _, cls = BACKENDS[library].partition(":")
    return getattr(importlib.import_module(module), cls)()


def parse_library(library: object, parameter: str = "library") -> Library:
    """``library`` as a :class:`Library`; a ValidationError naming ``parameter`` otherwise."""
    try:
        return Library(library)
    except ValueError:
        names = ", ".join(repr(n.value) for n in Library)
        raise ValidationError.expected(parameter, f"one of {names}", library) from None


def get_backend(library: object) -> Backend:
    """The backend registered as ``library`` ('keras' or 'pytorch')."""
    return _load(parse_library(library))
