"""The one small interface every deep-learning backend implements."""

from __future__ import annotations

import abc
import importlib.util
import random
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from aiqc.analysis import AnalysisType
from aiqc.exceptions import MissingExtraError

__all__ = ["Backend", "Prediction", "to_prediction"]


@dataclass(frozen=True)
class Prediction:
    """What the default ``fn_predict`` returns for one split."""

    predictions: np.ndarray  # (n,) class index per row; regression: (n,) or (n, outputs) values
    probabilities: np.ndarray | None  # multiclass (n, k); binary (n,) positive class; regression None


class Backend(abc.ABC):
    """A deep-learning library, as aiqc's runner sees it.

    Every method taking an ``analysis`` expects an :class:`AnalysisType`. The library itself is
    imported only by :meth:`import_library`, never when this module or a subclass is imported.
    """

    name: str  # the library name users pass: "keras", "pytorch"
    extra: str  # the pip extra that installs it: pip install 'aiqc[<extra>]'
    modules: tuple[str, ...]  # top-level modules it needs
    model_description: str  # for messages: "keras.Model"

    # --- availability ---------------------------------------------------------------------
    def check_installed(self) -> None:
        """Raise :class:`MissingExtraError` naming the pip extra; imports nothing."""
        missing = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if missing:
            needs = " and ".join(missing)
            verb = "is" if len(missing) == 1 else "are"
            raise MissingExtraError(
                f"library: {self.name!r} needs {needs}, which {verb} not installed; received "
                f"library={self.name!r}. Install it with: pip install 'aiqc[{self.extra}]'"
            )

    def import_library(self) -> Any:
        """The library's main module (``keras``, ``torch``), imported on first use."""
        self.check_installed()
        return self._import()

    @abc.abstractmethod
    def _import(self) -> Any: ...

    # --- a job's life -----------------------------------------------------------------------
    def configure(self, threads: int | None, seed: int | None) -> None:
        """Cap intra-op threads and seed every random generator a job may use."""
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed % 2**32)
        self._configure(threads, seed)

    @abc.abstractmethod
    def _configure(self, threads: int | None, seed: int | None) -> None: ...

    @abc.abstractmethod
    def is_model(self, obj: Any) -> bool:
        """Whether ``obj`` is a model of this library (what fn_build and fn_train must return)."""

    def prepare_model(self, model: Any) -> Any:
        """The model ready to train (e.g. moved to the GPU)."""
        return model

    def release_model(self, model: Any) -> None:
        """Undo what :meth:`prepare_model` attached for training only."""

    @abc.abstractmethod
    def default_loss(self, analysis: AnalysisType, label_shape: tuple[int, ...]) -> Any:
        """The loss used when ``fn_lose`` is None; ``label_shape`` is the encoded labels' shape."""

    @abc.abstractmethod
    def default_optimizer(self, model: Any, analysis: AnalysisType, hp: dict[str, Any]) -> Any:
        """The optimizer used when ``fn_optimize`` is None: Adamax, ``hp.get('learning_rate', 0.01)``."""

    @abc.abstractmethod
    def to_samples(self, features: np.ndarray, labels: np.ndarray | None, analysis: AnalysisType) -> dict:
        """``{"features": ..., "labels": ...}`` in the form the library trains on."""

    def to_numpy(self, value: Any) -> np.ndarray | None:
        """A value returned by a user's ``fn_predict``, as numpy."""
        return None if value is None else np.asarray(value)

    @abc.abstractmethod
    def outputs(self, model: Any, features: np.ndarray) -> np.ndarray:
        """The model's raw output for ``features`` (inference mode), as numpy."""

    def predict(self, model: Any, features: np.ndarray, analysis: AnalysisType) -> Prediction:
        """The default ``fn_predict``: class indices and probabilities, or values."""
        return to_prediction(self.outputs(model, features), analysis)

    @abc.abstractmethod
    def history(self, model: Any) -> dict[str, list[float]]:
        """Per-epoch values recorded while training (``{}`` when none were)."""

    @abc.abstractmethod
    def dump(self, model: Any) -> bytes:
        """The trained model as bytes, to store."""

    @abc.abstractmethod
    def load(self, blob: bytes, rebuild: Callable[[], Any]) -> Any:
        """A model back from :meth:`dump`'s bytes; ``rebuild()`` makes an untrained one if needed."""


def to_prediction(outputs: np.ndarray, analysis: AnalysisType) -> Prediction:
    """Raw model outputs -> :class:`Prediction`.

    Softmax (multiclass) or sigmoid (binary, one output) is applied only when the outputs are
    not probabilities already, so a model may end in logits or in a Softmax/Sigmoid layer.
    A binary model may also have two outputs, one per class.
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    if analysis is AnalysisType.REGRESSION:
        if outputs.ndim == 2 and outputs.shape[1] == 1:
            outputs = outputs[:, 0]
        return Prediction(outputs, None)

    if outputs.ndim == 1:
        outputs = outputs[:, np.newaxis]
    width = outputs.shape[1] if outputs.ndim == 2 else None
    if analysis is AnalysisType.CLASSIFICATION_BINARY:
        if width == 1:
            scores = outputs[:, 0]
            if scores.size and (scores.min() < 0 or scores.max() > 1):
                scores = _sigmoid(scores)
        elif width == 2:
            scores = _as_distribution(outputs)[:, 1]
        else:
            raise ValueError(f"model output: expected shape (n, 1) or (n, 2) for {analysis.value!r}; "
                             f"received shape {outputs.shape}.")
        return Prediction((scores >= 0.5).astype(np.int64), scores)

    if width is None or width < 2:
        raise ValueError(f"model output: expected shape (n, classes) with classes >= 2 for {analysis.value!r}; "
                         f"received shape {outputs.shape}.")
    probabilities = _as_distribution(outputs)
    return Prediction(probabilities.argmax(axis=1).astype(np.int64), probabilities)


def _as_distribution(outputs: np.ndarray) -> np.ndarray:
    """Rows as given when they are probability distributions (within 1e-3), else their softmax."""
    if not outputs.size or (outputs.min() >= 0 and np.allclose(outputs.sum(axis=1), 1, rtol=0, atol=1e-3)):
        return outputs
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large negative inputs."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))
