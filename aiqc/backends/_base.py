"""The one small interface every deep-learning backend implements."""

from __future__ import annotations

import abc
import importlib.util
import random
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from aiqc.analysis import Analysis, AnalysisType, Prediction
from aiqc.exceptions import MissingExtraError

__all__ = ["Backend", "Defaults"]

#: rows of zeros a model is called on to learn its output shape (2: batch normalisation needs > 1)
PROBE_ROWS = 2


def _predict_outputs(analysis: Analysis, outputs: np.ndarray) -> Prediction:
    """The analysis type's own reading of raw outputs (softmax / sigmoid only where needed)."""
    return analysis.to_prediction(outputs)


@dataclass(frozen=True)
class Defaults:
    """One row of a backend's table: what ``fn_lose``, ``fn_optimize`` and ``fn_predict``
    default to for one analysis type, and the form labels are handed to ``fn_train`` in."""

    #: (library module, encoded label shape) -> the loss
    loss: Callable[[Any, tuple[int, ...]], Any]
    #: (library module, model, hyperparameters) -> the optimizer
    optimizer: Callable[[Any, Any, dict[str, Any]], Any]
    #: (analysis type's spec, raw model outputs) -> predictions and probabilities
    predict: Callable[[Analysis, np.ndarray], Prediction] = _predict_outputs
    #: encoded labels (n, columns) -> the labels array the library trains on; None: float32 as they are
    labels: Callable[[np.ndarray], np.ndarray] | None = None


class Backend(abc.ABC):
    """A deep-learning library, as aiqc's runner sees it.

    Every method taking an ``analysis`` expects an :class:`AnalysisType`. The library itself is
    imported only by :meth:`import_library`, never when this module or a subclass is imported.
    What depends on the analysis type is in :attr:`defaults`, one row per type.
    """

    name: str  # the library name users pass: "keras", "pytorch"
    extra: str  # the pip extra that installs it: pip install 'aiqc[<extra>]'
    modules: tuple[str, ...]  # top-level modules it needs
    model_description: str  # for messages: "keras.Model"
    defaults: ClassVar[Mapping[AnalysisType, Defaults]]  # one row per analysis type

    def row(self, analysis: AnalysisType) -> Defaults:
        """This backend's defaults for ``analysis``."""
        return self.defaults[AnalysisType.parse(analysis)]

    # --- availability ---------------------------------------------------------------------
    def installed(self) -> bool:
        """Whether the library's modules can be imported; imports nothing."""
        return all(importlib.util.find_spec(m) is not None for m in self.modules)

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

    def warm_up(self) -> None:
        """Load what a first job would load lazily (the library and its lazily imported
        parts), so that a worker pays it once before its first claim and no job's time
        includes it. Call after :meth:`configure`."""
        self.import_library()

    @abc.abstractmethod
    def is_model(self, obj: Any) -> bool:
        """Whether ``obj`` is a model of this library (what fn_build and fn_train must return)."""

    @abc.abstractmethod
    def is_optimizer(self, obj: Any) -> bool:
        """Whether ``obj`` can be the optimizer ``fn_train`` receives (what fn_optimize must return)."""

    def is_loss(self, obj: Any) -> bool:
        """Whether ``obj`` can be the loss ``fn_train`` receives (what fn_lose must return): a
        loss object or function."""
        return callable(obj)

    def prepare_model(self, model: Any) -> Any:
        """The model ready to train (e.g. moved to the GPU)."""
        return model

    def release_model(self, model: Any) -> None:
        """Undo what :meth:`prepare_model` attached for training only."""

    def default_loss(self, analysis: AnalysisType, label_shape: tuple[int, ...]) -> Any:
        """The loss used when ``fn_lose`` is None; ``label_shape`` is the encoded labels' shape."""
        return self.row(analysis).loss(self.import_library(), tuple(label_shape))

    def default_optimizer(self, model: Any, analysis: AnalysisType, hp: dict[str, Any]) -> Any:
        """The optimizer used when ``fn_optimize`` is None: Adamax, ``hp.get('learning_rate', 0.01)``."""
        return self.row(analysis).optimizer(self.import_library(), model, hp)

    def sample_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of one sample as the library takes it (what ``fn_build`` receives as
        ``features_shape``) from its stored shape: a table's (features,), a sequence's
        (timesteps, features) and an image's (height, width, channels), channels last. The
        default keeps it; a channels-first library moves an image's channels first."""
        return tuple(int(d) for d in shape)

    def layout(self, features: np.ndarray) -> np.ndarray:
        """Samples as the library takes them, from the stored layout (see :meth:`sample_shape`)."""
        return features

    @abc.abstractmethod
    def to_samples(self, features: np.ndarray, labels: np.ndarray | None, analysis: AnalysisType) -> dict:
        """``{"features": ..., "labels": ...}`` in the form the library trains on."""

    def to_numpy(self, value: Any) -> np.ndarray | None:
        """A value returned by a user's ``fn_predict``, as numpy."""
        return None if value is None else np.asarray(value)

    @abc.abstractmethod
    def outputs(self, model: Any, features: np.ndarray) -> np.ndarray:
        """The model's raw output for ``features`` (inference mode), as numpy."""

    @abc.abstractmethod
    def output_shape(self, model: Any, features_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of an untrained model's output for a batch of 2 rows of zeros shaped
        ``features_shape`` (inference mode, no gradients, on the model's own device)."""

    def output_width(self, model: Any, features_shape: tuple[int, ...]) -> int:
        """How many values the model outputs per row (1 for a 1-D output), found without
        training; a ValueError when its output does not have one row per input row."""
        shape = tuple(int(d) for d in self.output_shape(model, tuple(features_shape)))
        if not shape or shape[0] != PROBE_ROWS:
            raise ValueError(f"expected an output with one row per input row, shape ({PROBE_ROWS}, ...); "
                             f"received shape {shape}")
        return int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1

    def predict(self, model: Any, features: np.ndarray, analysis: AnalysisType) -> Prediction:
        """The default ``fn_predict``: class indices and probabilities, or values."""
        analysis = AnalysisType.parse(analysis)
        return self.row(analysis).predict(analysis.spec, self.outputs(model, features))

    @abc.abstractmethod
    def history(self, model: Any) -> dict[str, list[float]]:
        """Per-epoch values recorded while training (``{}`` when none were)."""

    @abc.abstractmethod
    def dump(self, model: Any) -> bytes:
        """The trained model as bytes, to store."""

    @abc.abstractmethod
    def load(self, blob: bytes, rebuild: Callable[[], Any]) -> Any:
        """A model back from :meth:`dump`'s bytes; ``rebuild()`` makes an untrained one if needed."""

    # --- a model to ship (aiqc.export) --------------------------------------------------------
    #: the model's file name in an exported predictor, and its format's name for the manifest
    export_file: ClassVar[str]
    export_format: ClassVar[str]

    @abc.abstractmethod
    def export_model(self, model: Any, features_shape: tuple[int, ...]) -> bytes:
        """The trained model in a format that loads without the user's code (no ``fn_build``);
        a ValueError saying why when this model cannot be written so."""

    @abc.abstractmethod
    def load_exported(self, blob: bytes) -> Any:
        """A model back from :meth:`export_model`'s bytes, ready for :meth:`outputs`."""
