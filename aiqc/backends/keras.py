"""Keras 3 (TensorFlow) backend. TensorFlow is imported only when a job needs it."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from aiqc.analysis import AnalysisType
from aiqc.backends._base import Backend

logger = logging.getLogger(__name__)


class KerasBackend(Backend):
    name = "keras"
    extra = "keras"
    modules = ("tensorflow", "keras")
    model_description = "keras.Model"
    _threads_set = False

    def _import(self) -> Any:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        return keras

    def _configure(self, threads: int | None, seed: int | None) -> None:
        keras = self.import_library()
        if threads and not KerasBackend._threads_set:
            import tensorflow as tf

            try:  # only possible before TensorFlow's runtime starts
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(max(1, min(2, threads)))
            except RuntimeError:
                logger.debug("TensorFlow already initialised; thread caps unchanged")
            KerasBackend._threads_set = True
        if seed is not None:
            keras.utils.set_random_seed(seed)

    def is_model(self, obj: Any) -> bool:
        return isinstance(obj, self.import_library().Model)

    def default_loss(self, analysis: AnalysisType, label_shape: tuple) -> Any:
        losses = self.import_library().losses
        if analysis is AnalysisType.CLASSIFICATION_MULTI:
            one_hot = len(label_shape) > 1 and label_shape[-1] > 1
            return losses.CategoricalCrossentropy() if one_hot else losses.SparseCategoricalCrossentropy()
        if analysis is AnalysisType.CLASSIFICATION_BINARY:
            return losses.BinaryCrossentropy()
        return losses.MeanAbsoluteError()

    def default_optimizer(self, model: Any, analysis: AnalysisType, hp: dict) -> Any:
        return self.import_library().optimizers.Adamax(learning_rate=hp.get("learning_rate", 0.01))

    def to_samples(self, features: np.ndarray, labels: np.ndarray | None, analysis: AnalysisType) -> dict:
        return {"features": np.asarray(features, dtype=np.float32),
                "labels": None if labels is None else np.asarray(labels, dtype=np.float32)}

    def outputs(self, model: Any, features: np.ndarray) -> np.ndarray:
        """Eager calls in chunks: unlike predict(), no tf.function is traced per model,
        which costs more than the whole prediction on tabular-sized data."""
        features = np.asarray(features, dtype=np.float32)
        chunks = [np.asarray(model(features[start:start + 8192], training=False))
                  for start in range(0, max(len(features), 1), 8192)]
        return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]

    def history(self, model: Any) -> dict[str, list[float]]:
        recorded = getattr(getattr(model, "history", None), "history", None) or {}
        return {k: [float(v) for v in values] for k, values in recorded.items()}

    def dump(self, model: Any) -> bytes:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.keras"
            model.save(path)
            return path.read_bytes()

    def load(self, blob: bytes, rebuild: Callable[[], Any]) -> Any:
        keras = self.import_library()
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.keras"
            path.write_bytes(blob)
            return keras.models.load_model(path)
