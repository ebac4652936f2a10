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


@dataclass
class Prediction:
    predictions: np.ndarray  # class index per row, or values (regression)
    probabilities: np.ndarray | None  # (n, k) multiclass, (n,) positive class for binary


class Backend(abc.ABC):
    name: str  # the library name users pass: "keras", "pytorch"
    extra: str  # pip extra that installs it
    modules: tuple[str, ...]  # importable modules it needs
    model_description: str  # for messages: "keras.Model"

    # --- availability --------------------------------------------------------------
    def check_installed(self) -> None:
        """Raise :class:`MissingExtraError` naming the pip extra, without importing anything."""
        missing = [m for m in self.modules if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingExtraError(
                f"library: {self.name!r} needs {', '.join(missing)}, which is not installed; "
                f"received library={self.name!r}. Install it with: pip install 'aiqc[{self.extra}]'"
            )

    def import_library(self) -> Any:
        self.check_installed()
        return self._import()

    @abc.abstractmethod
    def _import(self) -> Any: ...

    # --- a job's life ----------------------------------------------------------------
    def configure(self, threads: int | None, seed: int | None) -> None:
        """Cap intra-op threads and seed every random generator the job may use."""
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed % 2**32)
        self._configure(threads, seed)

    @abc.abstractmethod
    def _configure(self, threads: int | None, seed: int | None) -> None: ...

    @abc.abstractmethod
    def is_model(self, obj: Any) -> bool: ...

    def prepare_model(self, model: Any) -> Any:
        return model

    @abc.abstractmethod
    def default_loss(self, analysis: AnalysisType, label_shape: tuple) -> Any: ...

    @abc.abstractmethod
    def default_optimizer(self, model: Any, analysis: AnalysisType, hp: dict) -> Any: ...

    @abc.abstractmethod
    def to_samples(self, features: np.ndarray, labels: np.ndarray | None, analysis: AnalysisType) -> dict: ...

    def to_numpy(self, value: Any) -> np.ndarray | None:
        return None if value is None else np.asarray(value)

    @abc.abstractmethod
    def outputs(self, model: Any, features: np.ndarray) -> np.ndarray:
        """The model's raw output for ``features``, as numpy."""

    def predict(self, model: Any, features: np.ndarray, analysis: AnalysisType) -> Prediction:
        """The default ``fn_predict``: class indices and probabilities, or values."""
        return to_prediction(self.outputs(model, features), analysis)

    @abc.abstractmethod
    def history(self, model: Any) -> dict[str, list[float]]: ...

    @abc.abstractmethod
    def dump(self, model: Any) -> bytes: ...

    @abc.abstractmethod
    def load(self, blob: bytes, rebuild: Callable[[], Any]) -> Any: ...


def to_prediction(outputs: np.ndarray, analysis: AnalysisType) -> Prediction:
    """Raw outputs -> predictions: softmax/sigmoid applied only where outputs are not
    already probabilities (so models may end in logits or in Softmax/Sigmoid)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if analysis is AnalysisType.REGRESSION:
        return Prediction(outputs.reshape(len(outputs), -1).squeeze(axis=1) if outputs.ndim > 1 and outputs.shape[1] == 1
                          else outputs, None)
    if analysis is AnalysisType.CLASSIFICATION_BINARY:
        scores = outputs.reshape(-1) if outputs.ndim == 1 or outputs.shape[1] == 1 else outputs[:, -1]
        if scores.min() < 0 or scores.max() > 1:
            scores = 1 / (1 + np.exp(-scores))
        return Prediction((scores >= 0.5).astype(np.int64), scores)
    is_distribution = outputs.min() >= 0 and np.allclose(outputs.sum(axis=1), 1, atol=1e-3)
    if not is_distribution:
        shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        outputs = shifted / shifted.sum(axis=1, keepdims=True)
    return Prediction(outputs.argmax(axis=1).astype(np.int64), outputs)
