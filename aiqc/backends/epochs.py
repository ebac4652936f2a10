"""Per-epoch values, reported while a model trains, to whoever listens.

The Keras callback aiqc adds to ``model.fit`` and :func:`aiqc.record_epoch` report each
epoch here; a pruner (:mod:`aiqc.pruning`) listens while a job of a search trains and answers
whether the job should stop. The listener is a context variable, so it belongs to the
thread (or task) that trains the job.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

#: (epoch index, {name: value}) -> whether training should stop now
Listener = Callable[[int, dict], bool]

_listener: contextvars.ContextVar[Listener | None] = contextvars.ContextVar("aiqc_epoch_listener", default=None)


@contextlib.contextmanager
def listen(listener: Listener) -> Iterator[Listener]:
    """Send every epoch reported in this context to ``listener``."""
    token = _listener.set(listener)
    try:
        yield listener
    finally:
        _listener.reset(token)


def listening() -> bool:
    """Whether anyone listens (a job of a search is training in this context)."""
    return _listener.get() is not None


def report(epoch: int, values: dict) -> bool:
    """Report one epoch's values; True when the listener says training should stop."""
    listener = _listener.get()
    return False if listener is None else bool(listener(epoch, values))
