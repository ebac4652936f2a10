"""Deep-learning backends. This registry is the only place that knows their names;
importing it imports neither TensorFlow nor torch."""

from __future__ import annotations

import importlib
from functools import lru_cache

from aiqc.backends._base import Backend, Prediction
from aiqc.exceptions import ValidationError

BACKENDS = {
    "keras": "aiqc.backends.keras:KerasBackend",
    "pytorch": "aiqc.backends.pytorch:TorchBackend",
}

__all__ = ["BACKENDS", "Backend", "Prediction", "get_backend"]


@lru_cache(maxsize=None)
def _load(name: str) -> Backend:
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def get_backend(library: object) -> Backend:
    """The backend registered as ``library`` ('keras' or 'pytorch')."""
    if not isinstance(library, str) or library not in BACKENDS:
        names = ", ".join(repr(n) for n in BACKENDS)
        raise ValidationError.expected("library", f"one of {names}", library)
    return _load(library)
