"""Keras 3 (TensorFlow) backend. TensorFlow is imported only when a job needs it."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aiqc.analysis import AnalysisType
from aiqc.backends import epochs
from aiqc.backends._base import PROBE_ROWS, Backend, Defaults

logger = logging.getLogger(__name__)

#: rows per eager call in :meth:`KerasBackend.outputs`; bounds memory on large splits
PREDICT_CHUNK = 16384


def _adamax(keras: Any, model: Any, hp: dict[str, Any]) -> Any:
    return keras.optimizers.Adamax(learning_rate=hp.get("learning_rate", 0.01))


def _categorical_loss(keras: Any, label_shape: tuple[int, ...]) -> Any:
    """One-hot labels: categorical cross-entropy; class indices in one column: its sparse form."""
    one_hot = len(label_shape) > 1 and label_shape[-1] > 1
    return keras.losses.CategoricalCrossentropy() if one_hot else keras.losses.SparseCategoricalCrossentropy()


#: analysis type -> default loss, optimizer and prediction
DEFAULTS = {
    AnalysisType.CLASSIFICATION_MULTI: Defaults(loss=_categorical_loss, optimizer=_adamax),
    AnalysisType.CLASSIFICATION_BINARY: Defaults(loss=lambda keras, shape: keras.losses.BinaryCrossentropy(),
                                                 optimizer=_adamax),
    AnalysisType.REGRESSION: Defaults(loss=lambda keras, shape: keras.losses.MeanAbsoluteError(), optimizer=_adamax),
}


class KerasBackend(Backend):
    """Keras 3 on TensorFlow: models are ``keras.Model``."""

    name = "keras"
    extra = "keras"
    modules = ("tensorflow", "keras")
    model_description = "keras.Model"
    defaults = DEFAULTS
    _threads: int | None = None  # the intra-op cap in force; TensorFlow accepts it once, before its runtime starts

    def _import(self) -> Any:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        return keras

    def _configure(self, threads: int | None, seed: int | None) -> None:
        keras = self.import_library()
        if threads and KerasBackend._threads is None:
            import tensorflow as tf

            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
                KerasBackend._threads = threads
            except RuntimeError:  # the user's own code started TensorFlow first
                KerasBackend._threads = 0
        if threads and KerasBackend._threads != threads:
            warnings.warn(
                f"threads={threads}: TensorFlow already runs in this process with "
                f"{KerasBackend._threads or 'its own'} intra-op threads, and accepts a cap only before it starts; "
                "this cap is ignored. Run the jobs in worker processes (run_jobs(workers=N) or `aiqc worker`) "
                "to apply it.", RuntimeWarning, stacklevel=2)
        if seed is not None:
            keras.utils.set_random_seed(seed)  # python, numpy and TensorFlow

    def prepare_model(self, model: Any) -> Any:
        """In a search, add a callback to the user's ``model.fit`` that reports each epoch's
        logs to aiqc and stops training when the pruner says so."""
        if not epochs.listening():
            return model
        keras = self.import_library()
        original = model.fit

        class ReportEpochs(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
                if epochs.report(epoch, dict(logs or {})):
                    self.model.stop_training = True

        def fit(*args: Any, **kwargs: Any) -> Any:
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), ReportEpochs()]
            return original(*args, **kwargs)

        object.__setattr__(model, "fit", fit)  # this instance only; bypasses Keras' attribute tracking
        return model

    def release_model(self, model: Any) -> None:
        model.__dict__.pop("fit", None)

    def is_model(self, obj: Any) -> bool:
        return isinstance(obj, self.import_library().Model)

    def is_optimizer(self, obj: Any) -> bool:
        return isinstance(obj, (str, self.import_library().optimizers.Optimizer))  # Keras also takes names

    def is_loss(self, obj: Any) -> bool:
        return callable(obj) or isinstance(obj, str)  # Keras also takes names

    def to_samples(self, features: np.ndarray, labels: np.ndarray | None, analysis: AnalysisType) -> dict:
        """float32 copies (a user's in-place edit cannot reach aiqc's arrays)."""
        return {"features": np.array(features, dtype=np.float32),
                "labels": None if labels is None else np.array(labels, dtype=np.float32)}

    def outputs(self, model: Any, features: np.ndarray) -> np.ndarray:
        """Eager ``model(x, training=False)`` calls in chunks.

        ``model.predict`` traces a tf.function per model and steps in batches of 32: on
        2 CPU cores, a fresh model predicting three splits took 0.43 s (40 rows each) and
        14 s (100k rows each), against 0.01 s and 0.15 s here. The values are the same.
        """
        features = np.asarray(features, dtype=np.float32)
        chunks = [np.asarray(model(features[start:start + PREDICT_CHUNK], training=False))
                  for start in range(0, max(len(features), 1), PREDICT_CHUNK)]
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def output_shape(self, model: Any, features_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``model(zeros, training=False)``: a called model also shows that it takes features of
        this shape (``model.output_shape`` alone would not), in a few milliseconds once
        TensorFlow is imported."""
        output = model(np.zeros((PROBE_ROWS, *features_shape), dtype=np.float32), training=False)
        return _shape_of(output)

    def history(self, model: Any) -> dict[str, list[float]]:
        """``model.history.history``: Keras sets it on every ``fit``, whatever callbacks were passed."""
        recorded = getattr(getattr(model, "history", None), "history", None) or {}
        return {name: [float(v) for v in values] for name, values in recorded.items()}

    def dump(self, model: Any) -> bytes:
        with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
            # TensorFlow variables predate NumPy 2's copy keyword; the saved values are the same.
            warnings.filterwarnings("ignore", "__array__ implementation doesn't accept a copy keyword",
                                    DeprecationWarning)
            path = Path(folder, "model.keras")
            model.save(path)
            return path.read_bytes()

    def load(self, blob: bytes, rebuild: Callable[[], Any]) -> Any:
        """``keras.models.load_model`` (safe mode). Models it cannot rebuild from the file alone
        (custom classes, Lambda layers) are rebuilt with ``rebuild()`` and given the stored weights."""
        keras = self.import_library()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder, "model.keras")
            path.write_bytes(blob)
            try:
                return keras.models.load_model(path)
            except (TypeError, ValueError) as error:
                logger.debug("load_model failed (%s); rebuilding the model and loading its weights", error)
                model = rebuild()
                model.load_weights(path)
                return model


    export_file = "model.keras"
    export_format = "keras"

    def export_model(self, model: Any, features_shape: tuple[int, ...]) -> bytes:
        """The ``.keras`` zip Keras itself writes (read back in safe mode: a model with Lambda
        layers or custom classes fails the export's check)."""
        return self.dump(model)

    def load_exported(self, blob: bytes) -> Any:
        """``keras.models.load_model(safe_mode=True, compile=False)``: no code of the user's runs."""
        keras = self.import_library()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder, self.export_file)
            path.write_bytes(blob)
            return keras.models.load_model(path, compile=False, safe_mode=True)


def _shape_of(output: Any) -> tuple[int, ...]:
    """The shape of one output tensor; a TypeError for several (a list or dict of tensors)."""
    if not hasattr(output, "shape"):
        raise TypeError(f"expected the model to return one tensor; it returned a {type(output).__name__}")
    return tuple(output.shape)
