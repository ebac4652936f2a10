"""Datasets whose samples are arrays, not rows of a table: images (N, H, W, C) and sequences
(N, timesteps, features). Pure functions on numpy arrays: storing them part by part, and
fitting and applying encoders on their last axis (an image's channels, a sequence's features).

An encoder of an array dataset is any scikit-learn transformer that maps columns to as many
columns (``MinMaxScaler`` scales to [0, 1], ``StandardScaler`` standardises): it is fit on the
training samples' values of each channel (every pixel of every training image, or every
timestep of every training sequence, one column per channel), a chunk at a time when it has
``partial_fit``, and applied the same way. The encoded arrays keep their shape, as float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pandas as pd

from aiqc.data import encode
from aiqc.exceptions import ValidationError

#: the modalities whose samples are arrays, and the shape of one sample: (H, W, C) or (timesteps, features)
SAMPLE_DIMENSIONS = {"image": 3, "sequence": 2}
#: stored bytes per part: small enough that the database's copy of one part costs little
#: memory beside the array (a write holds no other copy)
PART_BYTES = 1024 * 1024
#: values (samples x pixels or timesteps x channels) fit or transformed at a time: scikit-learn
#: works in float64, so a chunk costs 8 bytes a value, 2 MB here, whatever the sample size
CHUNK_VALUES = 1 << 18


@dataclass
class ArrayDatasetPlan:
    """A checked array dataset to store: the samples (one array, N first), the table of one row
    per sample (its label and what identifies it: a file name, a sequence id), the channel
    names (an image's channels, a sequence's features) and how the arrays were made
    (``settings``: a resize, padding or truncation, recorded with the dataset)."""

    array: np.ndarray = field(repr=False)
    df: pd.DataFrame = field(repr=False)  # one row per sample; holds the label column
    modality: str
    channels: list[str]
    source: str
    name: str | None = None
    description: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def dtypes(self) -> dict[str, str]:
        """Column name -> dtype name of the table's columns."""
        from aiqc.data.frames import dtype_names

        return dtype_names(self.df)

    @property
    def sample_shape(self) -> list[int]:
        """The shape of one sample: (H, W, C) or (timesteps, features)."""
        return [int(d) for d in self.array.shape[1:]]


def check_array(array: Any, modality: str, parameter: str) -> np.ndarray:
    """A numeric numpy array of N samples, each of :data:`SAMPLE_DIMENSIONS` dimensions, every
    value finite; NaN or inf is an error naming the samples that hold it."""
    dimensions = SAMPLE_DIMENSIONS[modality]
    what = {"image": "(samples, height, width, channels)", "sequence": "(samples, timesteps, features)"}[modality]
    if not isinstance(array, np.ndarray):
        raise ValidationError.expected(parameter, f"a numpy array shaped {what}", array)
    if array.ndim != dimensions + 1:
        raise ValidationError(f"{parameter}: expected a {dimensions + 1}-D array shaped {what}; received a "
                              f"{array.ndim}-D array of shape {array.shape}.")
    if array.dtype.kind not in "biuf" or array.dtype.kind == "b":
        raise ValidationError.expected(parameter, "an array of numbers (an integer or float dtype)", f"dtype {array.dtype}")
    if len(array) < 2:
        raise ValidationError(f"{parameter}: expected at least 2 samples; received {len(array)}.")
    if array.dtype.kind == "f":
        bad = _nonfinite_samples(array)
        if len(bad):
            raise ValidationError(
                f"{parameter}: expected finite values; received NaN or inf in {len(bad)} sample(s), positions "
                f"{bad[:10].tolist()!r}{' ...' if len(bad) > 10 else ''}. Fill or drop them first.")
    return array


def chunk_samples(array: np.ndarray) -> int:
    """How many samples of ``array`` make a chunk of about :data:`CHUNK_VALUES` values."""
    return max(1, CHUNK_VALUES // max(1, int(np.prod(array.shape[1:], dtype=np.int64))))


def _nonfinite_samples(array: np.ndarray) -> np.ndarray:
    """Positions of the samples holding NaN or inf (checked a chunk at a time)."""
    bad, step = [], chunk_samples(array)
    for start in range(0, len(array), step):
        chunk = array[start:start + step].reshape(min(step, len(array) - start), -1)
        rows = np.flatnonzero(~np.isfinite(chunk).all(axis=1))
        bad.append(rows + start)
    return np.concatenate(bad) if bad else np.array([], dtype=np.int64)


# --- storing ------------------------------------------------------------------------------------
def stored_dtype(array: np.ndarray) -> np.dtype:
    """The dtype samples are stored in: the array's, in native byte order (the bytes are stored raw)."""
    return array.dtype.newbyteorder("=")


def iter_array_parts(array: np.ndarray) -> Iterator[tuple[int, int, memoryview]]:
    """``(sample_start, sample_count, raw bytes)`` for consecutive ranges of samples of about
    :data:`PART_BYTES` each, C order, in :func:`stored_dtype`: a view of the array wherever it
    is contiguous, so storing copies nothing but one part at a time. The dataset records the
    dtype and the sample shape that read them back (:func:`parts_to_array`)."""
    dtype = stored_dtype(array)
    per_sample = max(1, int(np.prod(array.shape[1:], dtype=np.int64)) * dtype.itemsize)
    per_part = max(1, PART_BYTES // per_sample)
    for start in range(0, len(array), per_part):
        chunk = np.ascontiguousarray(array[start:start + per_part], dtype=dtype)
        yield start, len(chunk), memoryview(chunk).cast("B")


def parts_to_array(blobs: list[bytes], dtype: Any, sample_shape: Any) -> np.ndarray:
    """The stored parts back as one array (N, *sample_shape) of ``dtype``."""
    shape = tuple(int(d) for d in sample_shape)
    dtype = np.dtype(dtype)
    arrays = [np.frombuffer(blob, dtype=dtype).reshape(-1, *shape) for blob in blobs]
    if not arrays:
        return np.empty((0, *shape), dtype=dtype)
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


# --- encoding -----------------------------------------------------------------------------------
def channel_values(array: np.ndarray) -> np.ndarray:
    """The array's values as one column per channel (its last axis), a view where possible: what
    a transformer is fit on and applied to (a plain array, no column names: scikit-learn checks
    names on every call, most of a small chunk's time)."""
    return array.reshape(-1, array.shape[-1])


def fit(spec: encode.EncoderSpec, array: np.ndarray, rows: np.ndarray, channels: list[str]) -> Any:
    """A clone of the spec's transformer fit on the values of each channel of the samples
    ``rows`` (training samples only), with ``partial_fit`` a chunk of samples at a time."""
    from sklearn.base import clone

    transformer = clone(spec.transformer)
    try:
        if hasattr(transformer, "partial_fit"):
            step = chunk_samples(array)
            for start in range(0, len(rows), step):
                chunk = array[rows[start:start + step]]
                transformer.partial_fit(channel_values(chunk))
        else:
            transformer.fit(channel_values(array[rows]))
    except (ValueError, TypeError) as error:
        raise ValidationError(f"{spec.describe()}: expected a transformer that can fit the values of the channels "
                              f"{channels[:10]!r}; fitting on the training samples failed: {error}") from error
    return transformer


def transform(fitted: Any, array: np.ndarray, channels: list[str]) -> np.ndarray:
    """``array`` encoded by a fitted transformer, channel by channel, as float32 of the same
    shape; a transformer that changes the number of channels is an error."""
    out = np.empty(array.shape, dtype=np.float32)
    step = chunk_samples(array)
    for start in range(0, len(array), step):
        chunk = array[start:start + step]
        encoded = encode.transform(fitted, channel_values(chunk))
        if encoded.shape != (chunk[..., 0].size, len(channels)):
            raise ValidationError(
                f"feature_encoders: expected a transformer that maps each of the {len(channels)} channels to one "
                f"value (a scaler); {type(fitted).__name__} returned {encoded.shape[1]} columns.")
        out[start:start + len(chunk)] = encoded.reshape(chunk.shape)
    return out


def encode_samples(array: np.ndarray, encoders: list[Any], channels: list[str]) -> np.ndarray:
    """``array`` through each fitted encoder in order (none: as float32), then checked finite."""
    if not encoders:
        return array.astype(np.float32)
    out = array
    for fitted in encoders:
        out = transform(fitted, out, channels)
    return out


def parse_encoders(value: Any, modality: str) -> list[encode.EncoderSpec]:
    """The checked specs of an array dataset's ``feature_encoders``: one
    ``dict(sklearn_preprocess=...)`` or a list of them, each applied to every channel (no
    ``dtypes`` or ``columns``: an array's channels are all numbers)."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValidationError.expected("feature_encoders", "None or a list of dict(sklearn_preprocess=...)", value)
    return [encode.EncoderSpec(encode._check_entry(entry, f"feature_encoders[{position}]", {"sklearn_preprocess"},
                                                   f"only the key 'sklearn_preprocess' ({modality} encoders apply to "
                                                   "every channel)"), f"feature_encoders[{position}]")
            for position, entry in enumerate(value)]


def plan_encoders(plan: ArrayDatasetPlan, label: Any, splits: Any, label_encoder: Any = None,
                  feature_encoders: Any = None) -> list[Any]:
    """The label encoder (on the table's label column, as for tables) and the feature encoders
    (on the samples' channels), each fit on the training samples only, and on each fold's
    training samples; each must encode the held-out samples to finite numbers."""
    from aiqc.data.plan import EncoderPlan, FeaturePlan, fit_scopes
    from aiqc.data.plan import plan_encoders as plan_table_encoders

    plans = plan_table_encoders(plan.df, label, FeaturePlan([], []), splits, label_encoder, None)
    for position, spec in enumerate(parse_encoders(feature_encoders, plan.modality)):
        spec.claimed = list(plan.channels)
        for fold_index, fit_rows, other_rows in fit_scopes(splits):
            fitted = fit(spec, plan.array, fit_rows, plan.channels)
            step = chunk_samples(plan.array)
            for rows in other_rows:
                for start in range(0, len(rows), step):
                    encoded = transform(fitted, plan.array[rows[start:start + step]], plan.channels)
                    if not np.isfinite(encoded).all():
                        raise ValidationError(f"{spec.describe()}: expected finite values from the held-out samples; "
                                              "it gave NaN or inf (a constant channel standardised?).")
            plans.append(EncoderPlan(spec, "feature", position, fold_index, fitted, list(plan.channels),
                                     list(plan.channels)))
    return plans


# --- what predict receives ----------------------------------------------------------------------
#: modality -> "module:function" reading what a user hands ``predict`` besides an array (image
#: files or a folder; a long DataFrame of sequences) into samples. Each function takes
#: ``(inputs, sample_shape, settings, parameter)`` (``settings``: the dataset's, e.g. its resize
#: or padding, applied the same way) and returns an array (N, *sample_shape), or raises a
#: ValidationError naming ``parameter``.
READERS = {"image": "aiqc.data.images:read_for_prediction", "sequence": "aiqc.data.sequences:read_for_prediction"}


def samples_for_prediction(inputs: Any, modality: str, sample_shape: Any, settings: dict | None = None,
                           parameter: str = "samples") -> np.ndarray:
    """New samples for ``predict``, checked against the stored ones' shape: an array (N, *shape),
    or one sample (*shape); a grayscale image without its channel axis (N, H, W) when the
    stored images have one channel; or what the modality's reader (:data:`READERS`) takes."""
    import importlib

    shape = tuple(int(d) for d in sample_shape)
    if isinstance(inputs, np.ndarray):
        array = inputs
    else:
        module, _, function = READERS[modality].partition(":")
        array = getattr(importlib.import_module(module), function)(inputs, shape, dict(settings or {}), parameter)
    if array.shape == shape:
        array = array[None]
    elif modality == "image" and shape[-1] == 1 and array.shape[1:] == shape[:-1]:
        array = array[..., None]  # (N, H, W) grayscale
    elif modality == "image" and shape[-1] == 1 and array.shape == shape[:-1]:
        array = array[None, ..., None]  # one (H, W) grayscale image
    if array.shape[1:] != shape:
        raise ValidationError(f"{parameter}: expected {modality}s of the shape the model was trained on, "
                              f"(N, {', '.join(map(str, shape))}); received an array of shape {array.shape}.")
    if array.dtype.kind not in "iuf":
        raise ValidationError.expected(parameter, "an array of numbers", f"dtype {array.dtype}")
    if len(array) == 0:
        raise ValidationError(f"{parameter}: expected at least one {modality}; received none.")
    if array.dtype.kind == "f":
        bad = _nonfinite_samples(array)
        if len(bad):
            raise ValidationError(f"{parameter}: expected finite values; received NaN or inf in sample(s) "
                                  f"{bad[:10].tolist()!r}.")
    return array
