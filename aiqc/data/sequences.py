"""Sequences (time series) as arrays (samples, timesteps, features): read from a 3-D numpy
array with its labels, or from a long DataFrame of one row per sequence x timestep, which is
pivoted. Pure functions; ``Pipeline.Sequence.make`` stores what :func:`plan_sequences` returns.

A long DataFrame holds a sequence id column, an optional time-order column, the feature
columns and the label (constant within a sequence)::

    sequence_id  t     x      y     label
    7            0   0.12  -0.40    sine
    7            1   0.31  -0.22    sine
    ...

Sequences keep the order in which their ids first appear (deterministic, whatever the ids'
type); the timesteps of a sequence follow ``order_column`` (a stable sort: ties are an error),
or the rows' order when it is None. Sequences of unequal length are an error unless
``padding`` pads them (``'post'``: after the values, ``'pre'``: before them) to the longest or
to ``length``; with ``length``, ``truncating`` cuts longer ones (``'post'`` keeps the first
``length`` timesteps, ``'pre'`` the last), as ``keras.utils.pad_sequences`` does. What was
done is recorded in the dataset's ``settings`` and applied again to what ``predict`` reads
(:func:`read_for_prediction`).
"""

from __future__ import annotations

import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aiqc.data.arrays import ArrayDatasetPlan, check_array
from aiqc.data.frames import check_frame, is_numeric, read_path, to_python
from aiqc.exceptions import ValidationError

#: how many ids or lengths an error lists before "..."
SHOWN = 10
#: the ends at which sequences are padded or truncated
ENDS = ("pre", "post")
#: the bundled generated datum (:data:`aiqc.datum.GENERATED`): sequences x timesteps, seed
SIGNALS = dict(sequences=300, timesteps=40, seed=16)


def plan_sequences(source: Any, label_column: str = "label", *, labels: Any = None,
                   sequence_column: str = "sequence_id", order_column: str | None = None,
                   feature_columns: Any = None, feature_names: Any = None, padding: str | None = None,
                   truncating: str | None = None, length: int | None = None, pad_value: float = 0.0,
                   name: str | None = None, description: str | None = None) -> ArrayDatasetPlan:
    """A checked sequence dataset to store: samples (N, timesteps, features) and a table of one
    row per sequence (``sequence_column``: its id, or its position for an array source; the
    label). ``source`` is a 3-D numpy array (with ``labels``: a 1-D array or list, or a
    DataFrame holding ``label_column``), or a long DataFrame or a path to a .csv, .tsv or
    .parquet file of one (see the module's docstring). Every check runs here, before any write."""
    _check_text(label_column, "label_column")
    _check_text(sequence_column, "sequence_column")
    if order_column is not None:
        _check_text(order_column, "order_column")
    for key, value in (("name", name), ("description", description)):
        if value is not None and not isinstance(value, str):
            raise ValidationError.expected(key, "None or a string", value)
    if label_column == sequence_column:
        raise ValidationError(f"sequence_column: expected a column other than the label {label_column!r}; "
                              f"received {sequence_column!r}.")
    fitting = check_fitting(padding, truncating, length, pad_value)
    if isinstance(source, np.ndarray):
        array, df, channels, lengths = _from_array(source, label_column, labels, sequence_column, feature_names)
        columns = dict(sequence_column=sequence_column, order_column=None, feature_columns=channels)
        source_name = "numpy"
    elif isinstance(source, (pd.DataFrame, str, os.PathLike)):
        for parameter, value in (("labels", labels), ("feature_names", feature_names)):
            if value is not None:
                raise ValidationError(f"{parameter}: expected None with a long DataFrame source (its labels are the "
                                      f"column label_column, its feature names the feature columns); received "
                                      f"{type(value).__name__}.")
        source_name = "pandas.DataFrame" if isinstance(source, pd.DataFrame) else str(Path(os.fspath(source)))
        frame = read_path(source, parameter="source") if not isinstance(source, pd.DataFrame) else source
        frame = check_frame(frame, "source")
        channels = _feature_columns(frame, feature_columns, sequence_column, order_column, label_column)
        long = _pivot_plan(frame, sequence_column, order_column, channels, "source", label_column=label_column)
        lengths = long["lengths"]
        if len(lengths) < 2:
            raise ValidationError(f"source: expected at least 2 sequences; received {len(lengths)} (the column "
                                  f"sequence_column={sequence_column!r} holds one id).")
        array = None
        df = pd.DataFrame({sequence_column: long["ids"], label_column: long["labels"]})
        columns = dict(sequence_column=sequence_column, order_column=order_column, feature_columns=channels)
    else:
        raise ValidationError.expected(
            "source", "a 3-D numpy array (samples, timesteps, features), a long DataFrame, or a path to a .csv, "
            ".tsv or .parquet file of one", source)

    target = _target_length(lengths, fitting, df[sequence_column].to_numpy(), "source")
    if array is None:
        array = _place(long, target, fitting)
    else:
        array = _fit_array(array, target, fitting)
    array = check_array(array, "sequence", "source")
    settings = dict(columns, padding=fitting["padding"], truncating=fitting["truncating"], length=int(target),
                    pad_value=fitting["pad_value"], lengths=_summary(lengths, target))
    return ArrayDatasetPlan(array=array, df=df, modality="sequence", channels=list(channels), source=source_name,
                            name=name, description=description, settings=settings)


def read_for_prediction(inputs: Any, sample_shape: tuple, settings: dict, parameter: str) -> np.ndarray:
    """New sequences for ``predict``: a long DataFrame (or a path to a .csv, .tsv or .parquet
    file of one) with the sequence, order and feature columns the dataset was made from (its
    ``settings``; other columns, such as the label, are ignored), pivoted to
    (N, timesteps, features) in the order the ids first appear, padded and truncated as the
    stored sequences were. A sequence of another length than the stored ones (when they were
    not padded or truncated), or a missing feature column, is an error naming ``parameter``."""
    timesteps = int(sample_shape[0])
    if isinstance(inputs, (str, os.PathLike)):
        inputs = read_path(inputs, parameter=parameter)
    if not isinstance(inputs, pd.DataFrame):
        raise ValidationError.expected(
            parameter, f"a numpy array (N, {', '.join(map(str, sample_shape))}) or a long DataFrame with the columns "
            f"{_needed(settings)!r}", inputs)
    frame = check_frame(inputs, parameter)
    missing = [c for c in _needed(settings) if c not in frame.columns]
    if missing:
        raise ValidationError(f"{parameter}: expected the columns the sequences were made from, {_needed(settings)!r}; "
                              f"received a DataFrame without {missing!r}.")
    features = list(settings["feature_columns"])
    not_numeric = {c: str(frame[c].dtype) for c in features if not is_numeric(frame[c].dtype)}
    if not_numeric:
        raise ValidationError(f"{parameter}: expected numeric feature columns; received {not_numeric!r}.")
    long = _pivot_plan(frame, settings["sequence_column"], settings.get("order_column"), features, parameter)
    fitting = dict(padding=settings.get("padding"), truncating=settings.get("truncating"),
                   pad_value=float(settings.get("pad_value", 0.0)))
    lengths = long["lengths"]
    short, longer = lengths < timesteps, lengths > timesteps
    for mask, key, what in ((short, "padding", "shorter"), (longer, "truncating", "longer")):
        if mask.any() and fitting[key] is None:
            raise ValidationError(
                f"{parameter}: expected sequences of {timesteps} timesteps, as the model was trained on (its dataset "
                f"was made with {key}=None); received {int(mask.sum())} {what} one(s): "
                f"{_show_lengths(long['ids'], lengths, mask)}.")
    return _place(long, timesteps, fitting)


def write_signals(folder: Any) -> str:
    """Write the bundled ``signals.parquet`` into ``folder`` and return its path: a long
    DataFrame (columns sequence_id, t, x, y, z, label) of 300 sequences of 40 timesteps and 3
    features, a third each of noisy sine, square and sawtooth waves (label ``sine``, ``square``,
    ``sawtooth``), each with a random frequency, phase, amplitude and noise. ``x`` is the wave,
    ``y`` the wave a quarter period later, ``z`` the wave at twice the frequency, each with its
    own noise. Seeded: the same file every time."""
    rng = np.random.default_rng(SIGNALS["seed"])
    count, steps = SIGNALS["sequences"], SIGNALS["timesteps"]
    kinds = np.array(["sine", "square", "sawtooth"])
    label = kinds[rng.permutation(np.arange(count) % len(kinds))]
    cycles = rng.uniform(1.0, 3.5, count)[:, None]  # periods over the 40 timesteps
    phase = rng.uniform(0, 2 * np.pi, count)[:, None]
    amplitude = rng.uniform(0.6, 1.4, count)[:, None]
    noise = rng.uniform(0.1, 0.35, count)[:, None, None]
    angle = phase + 2 * np.pi * cycles * np.arange(steps)[None, :] / steps
    waves = {"sine": np.sin, "square": lambda a: np.sign(np.sin(a)),
             "sawtooth": lambda a: 2 * ((a / (2 * np.pi)) % 1.0) - 1}
    values = np.empty((count, steps, 3))
    for kind, wave in waves.items():
        rows = label == kind
        values[rows] = np.stack([wave(angle[rows]), wave(angle[rows] + np.pi / 2), wave(2 * angle[rows])], axis=-1)
    values = amplitude[:, :, None] * values + noise * rng.standard_normal(values.shape)
    df = pd.DataFrame({
        "sequence_id": np.repeat(np.arange(count), steps),
        "t": np.tile(np.arange(steps), count),
        **{axis: values[..., position].ravel().round(5) for position, axis in enumerate("xyz")},
        "label": np.repeat(label, steps),
    })
    path = Path(folder) / "signals.parquet"
    df.to_parquet(path, index=False)
    return str(path)


# --- checks ---------------------------------------------------------------------------------------
def _check_text(value: Any, parameter: str) -> None:
    """A column name: a non-empty string."""
    if not isinstance(value, str) or not value:
        raise ValidationError.expected(parameter, "the name of one column (a string)", value)


def check_fitting(padding: Any, truncating: Any, length: Any, pad_value: Any) -> dict:
    """The checked padding arguments: ``padding`` and ``truncating`` None, 'pre' or 'post';
    ``length`` None or an integer >= 1 (``truncating`` needs it: without it sequences are
    padded to the longest, never cut); ``pad_value`` a finite number."""
    for parameter, value in (("padding", padding), ("truncating", truncating)):
        if value is not None and value not in ENDS:
            raise ValidationError.expected(parameter, "None, 'pre' or 'post'", value)
    if length is not None and (isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 1):
        raise ValidationError.expected("length", "None or an integer >= 1 (the timesteps of every sequence)", length)
    if truncating is not None and length is None:
        raise ValidationError(f"truncating: expected None unless length= is given (without it sequences are padded "
                              f"to the longest, none is cut); received {truncating!r} with length=None.")
    if (isinstance(pad_value, bool) or not isinstance(pad_value, numbers.Real)
            or not np.isfinite(float(pad_value))):
        raise ValidationError.expected("pad_value", "a finite number", pad_value)
    return dict(padding=padding, truncating=truncating, length=None if length is None else int(length),
                pad_value=float(pad_value))


def _from_array(source: np.ndarray, label_column: str, labels: Any, sequence_column: str,
                feature_names: Any) -> tuple[np.ndarray, pd.DataFrame, list[str], np.ndarray]:
    """(array, table, feature names, lengths) of a 3-D array source and its labels."""
    array = check_array(source, "sequence", "source")
    count, steps, width = array.shape
    if feature_names is None:
        channels = [f"feature_{position}" for position in range(width)]
    else:
        if isinstance(feature_names, str) or not isinstance(feature_names, (list, tuple, np.ndarray, pd.Index)):
            raise ValidationError.expected("feature_names", f"None or a list of {width} names (the last axis)",
                                           feature_names)
        channels = list(feature_names)
        if len(channels) != width or not all(isinstance(c, str) and c for c in channels):
            raise ValidationError(f"feature_names: expected {width} strings, one per feature (the array's last axis); "
                                  f"received {channels[:SHOWN]!r} ({len(channels)} names).")
        if len(set(channels)) != width:
            raise ValidationError(f"feature_names: expected unique names; received {channels[:SHOWN]!r}.")
    if labels is None:
        raise ValidationError.expected("labels", f"a 1-D array or list of {count} labels (one per sequence), or a "
                                       f"DataFrame holding the column {label_column!r}", labels)
    if isinstance(labels, pd.DataFrame):
        if label_column not in labels.columns:
            raise ValidationError(f"labels: expected a DataFrame holding the column label_column={label_column!r}; "
                                  f"received one with the columns {list(labels.columns)[:SHOWN]!r}.")
        values = labels[label_column]
    elif isinstance(labels, pd.Series):
        values = labels
    elif isinstance(labels, (np.ndarray, list, tuple)):
        if np.ndim(labels) != 1:
            raise ValidationError(f"labels: expected a 1-D array or list (one label per sequence); received one of "
                                  f"shape {np.shape(labels)}.")
        values = pd.Series(labels)
    else:
        raise ValidationError.expected("labels", f"a 1-D array or list of {count} labels, or a DataFrame holding "
                                       f"the column {label_column!r}", labels)
    if len(values) != count:
        raise ValidationError(f"labels: expected {count} labels, one per sequence of source; received {len(values)}.")
    df = pd.DataFrame({sequence_column: np.arange(count, dtype=np.int64), label_column: values.reset_index(drop=True)})
    return array, df, channels, np.full(count, steps, dtype=np.int64)


def _feature_columns(frame: pd.DataFrame, feature_columns: Any, sequence_column: str, order_column: str | None,
                     label_column: str) -> list[str]:
    """The checked feature columns of a long DataFrame: those named, or every numeric column but
    the sequence, order and label columns."""
    reserved = {"sequence_column": sequence_column, "order_column": order_column, "label_column": label_column}
    for parameter, column in reserved.items():
        if column is not None and column not in frame.columns:
            raise ValidationError(f"{parameter}: expected a column of source {list(frame.columns)[:20]!r}; "
                                  f"received {column!r}.")
    others = {c for c in reserved.values() if c is not None}
    if feature_columns is None:
        columns = [c for c in frame.columns if c not in others and is_numeric(frame[c].dtype)]
        if not columns:
            raise ValidationError(f"feature_columns: expected at least one numeric column besides {sorted(others)!r}; "
                                  f"source has none (its columns: {list(frame.columns)[:20]!r}).")
        return columns
    if isinstance(feature_columns, str):
        feature_columns = [feature_columns]
    if not isinstance(feature_columns, (list, tuple, pd.Index)) or not feature_columns \
            or not all(isinstance(c, str) for c in feature_columns):
        raise ValidationError.expected("feature_columns", "None or a non-empty list of column names", feature_columns)
    columns = list(feature_columns)
    if len(set(columns)) != len(columns):
        raise ValidationError(f"feature_columns: expected unique column names; received {columns!r}.")
    unknown = [c for c in columns if c not in frame.columns]
    if unknown:
        raise ValidationError(f"feature_columns: expected columns of source {list(frame.columns)[:20]!r}; received "
                              f"unknown {unknown!r}.")
    clash = [c for c in columns if c in others]
    if clash:
        raise ValidationError(f"feature_columns: expected columns other than the sequence, order and label columns; "
                              f"received {clash!r}.")
    not_numeric = {c: str(frame[c].dtype) for c in columns if not is_numeric(frame[c].dtype)}
    if not_numeric:
        raise ValidationError(f"feature_columns: expected numeric columns; received {not_numeric!r}. Encode them as "
                              "numbers first, or leave them out.")
    return columns


# --- pivoting ---------------------------------------------------------------------------------------
def _values(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """The feature columns as one 2-D numpy array: their common numpy dtype (float64 for
    pandas' nullable dtypes, whose missing values become NaN)."""
    dtypes = [frame[c].dtype for c in columns]
    if all(isinstance(d, np.dtype) for d in dtypes):
        return frame[columns].to_numpy(dtype=np.result_type(*dtypes))
    return frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)


def _pivot_plan(frame: pd.DataFrame, sequence_column: str, order_column: str | None, features: list[str],
                parameter: str, label_column: str | None = None) -> dict:
    """The rows of a long DataFrame grouped by sequence, each in time order: ``ids`` (in the
    order they first appear), ``lengths``, ``codes`` (each sorted row's sequence), ``position``
    (its timestep within its sequence), ``values`` (sorted rows x features) and, with
    ``label_column``, ``labels`` (one per sequence, checked constant within it)."""
    ids_column = frame[sequence_column]
    if ids_column.isna().any():
        raise ValidationError(f"{parameter}: expected a sequence id in every row of "
                              f"sequence_column={sequence_column!r}; received {int(ids_column.isna().sum())} missing.")
    codes, ids = pd.factorize(ids_column, sort=False)
    if order_column is None:
        order = np.argsort(codes, kind="stable")
    else:
        time = frame[order_column]
        if time.isna().any():
            raise ValidationError(f"{parameter}: expected a value in every row of order_column={order_column!r}; "
                                  f"received {int(time.isna().sum())} missing.")
        try:
            order = np.lexsort((time.to_numpy(), codes))
        except TypeError as error:
            raise ValidationError(f"order_column: expected values that sort (numbers, dates); received "
                                  f"{order_column!r} of dtype {time.dtype}: {error}") from error
        sorted_time = time.to_numpy()[order]
        ties = (codes[order][1:] == codes[order][:-1]) & (sorted_time[1:] == sorted_time[:-1])
        if ties.any():
            tied = pd.unique(codes[order][1:][ties])
            raise ValidationError(
                f"order_column: expected one row per sequence and time; received repeated {order_column!r} values in "
                f"{len(tied)} sequence(s): {_show(ids, tied)}.")
    codes = codes[order]
    lengths = np.bincount(codes, minlength=len(ids)).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    values = _values(frame, features)[order]
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            sequences = pd.unique(codes[bad])
            raise ValidationError(f"{parameter}: expected finite values in the feature columns; received NaN or inf in "
                                  f"{len(sequences)} sequence(s): {_show(ids, sequences)}. Fill or drop them first.")
    plan = dict(ids=np.asarray(ids), lengths=lengths, codes=codes, position=np.arange(len(codes)) - starts[codes],
                values=values)
    if label_column is not None:
        label = frame[label_column].iloc[order].reset_index(drop=True)
        varying = label.groupby(codes).nunique(dropna=False)
        varying = varying.index[varying.to_numpy() > 1].to_numpy()
        if len(varying):
            raise ValidationError(
                f"label_column: expected one label per sequence ({label_column!r} constant within each); received "
                f"{len(varying)} sequence(s) where it varies: {_show(ids, varying)}.")
        plan["labels"] = label.iloc[starts].reset_index(drop=True)
    return plan


def _target_length(lengths: np.ndarray, fitting: dict, ids: np.ndarray, parameter: str) -> int:
    """The timesteps of every sample: ``length``, else the longest; a sequence that would
    need padding or truncating the arguments do not ask for is an error."""
    target = fitting["length"] if fitting["length"] is not None else int(lengths.max())
    short, longer = lengths < target, lengths > target
    if short.any() and fitting["padding"] is None:
        if fitting["length"] is None:
            found = pd.Series(lengths).value_counts().sort_index()
            raise ValidationError(
                f"{parameter}: expected sequences of one length, or padding='pre' or 'post' (to pad them to the "
                f"longest, or to length=); received {len(found)} lengths {_counts(found)}, e.g. "
                f"{_show_lengths(ids, lengths, short)}.")
        raise ValidationError(f"padding: expected 'pre' or 'post', since {int(short.sum())} sequence(s) are shorter "
                              f"than length={target}; received None (e.g. {_show_lengths(ids, lengths, short)}).")
    if longer.any() and fitting["truncating"] is None:
        raise ValidationError(f"truncating: expected 'pre' or 'post', since {int(longer.sum())} sequence(s) are longer "
                              f"than length={target}; received None (e.g. {_show_lengths(ids, lengths, longer)}).")
    return int(target)


def _shifts(lengths: np.ndarray, target: int, fitting: dict) -> np.ndarray:
    """Per sequence, what to add to a timestep's position to get its place in the sample: a
    sequence padded 'pre' starts later, one truncated 'pre' loses its first timesteps."""
    shift = np.zeros(len(lengths), dtype=np.int64)
    if fitting["padding"] == "pre":
        shift = np.where(lengths < target, target - lengths, shift)
    if fitting["truncating"] == "pre":
        shift = np.where(lengths > target, target - lengths, shift)
    return shift


def _place(long: dict, target: int, fitting: dict) -> np.ndarray:
    """The pivoted samples (sequences, ``target``, features): each timestep at its place after
    padding and truncating, the rest ``pad_value``."""
    values = long["values"]
    dtype = values.dtype
    if dtype.kind in "iu" and (not float(fitting["pad_value"]).is_integer() or not _fits(fitting["pad_value"], dtype)):
        dtype = np.dtype(np.float64)
    out = np.full((len(long["lengths"]), target, values.shape[1]), fitting["pad_value"], dtype=dtype)
    place = long["position"] + _shifts(long["lengths"], target, fitting)[long["codes"]]
    keep = (place >= 0) & (place < target)
    out[long["codes"][keep], place[keep]] = values[keep]
    return out


def _fits(value: float, dtype: np.dtype) -> bool:
    """Whether an integer ``value`` is in the range of the integer ``dtype``."""
    info = np.iinfo(dtype)
    return info.min <= value <= info.max


def _fit_array(array: np.ndarray, target: int, fitting: dict) -> np.ndarray:
    """A 3-D array source brought to ``target`` timesteps (its sequences are all as long)."""
    steps = array.shape[1]
    if target == steps:
        return array
    if target < steps:
        return array[:, steps - target:] if fitting["truncating"] == "pre" else array[:, :target]
    long = dict(values=array.reshape(-1, array.shape[2]), lengths=np.full(len(array), steps, dtype=np.int64),
                codes=np.repeat(np.arange(len(array)), steps), position=np.tile(np.arange(steps), len(array)))
    return _place(long, target, fitting)


# --- messages ---------------------------------------------------------------------------------------
def _needed(settings: dict) -> list[str]:
    """The columns a long DataFrame for ``predict`` must hold."""
    order = [settings["order_column"]] if settings.get("order_column") else []
    return [settings["sequence_column"], *order, *settings["feature_columns"]]


def _show(ids: Any, codes: np.ndarray) -> str:
    """The ids of some sequences (by code), at most :data:`SHOWN`."""
    shown = to_python(np.asarray(ids)[np.asarray(codes)[:SHOWN]])
    return f"{shown!r}{_more(len(codes))}"


def _show_lengths(ids: Any, lengths: np.ndarray, mask: np.ndarray) -> str:
    """Some sequences picked by ``mask``, as ``{id: length}``."""
    codes = np.flatnonzero(mask)
    shown = dict(zip(to_python(np.asarray(ids)[codes[:SHOWN]]), to_python(lengths[codes[:SHOWN]])))
    return f"sequence id -> length {shown!r}{_more(len(codes))}"


def _counts(found: pd.Series) -> str:
    """``{length: sequences}`` of the lengths found, at most :data:`SHOWN` of them."""
    shown = dict(zip(to_python(found.index.to_numpy()[:SHOWN]), to_python(found.to_numpy()[:SHOWN])))
    return f"(length -> sequences) {shown!r}{_more(len(found))}"


def _more(count: int) -> str:
    """What a list cut at :data:`SHOWN` leaves out."""
    return f" (and {count - SHOWN} more)" if count > SHOWN else ""


def _summary(lengths: np.ndarray, target: int) -> dict:
    """The recorded summary of the sequences' lengths before padding and truncating."""
    return dict(min=int(lengths.min()), max=int(lengths.max()), median=float(np.median(lengths)),
                padded=int((lengths < target).sum()), truncated=int((lengths > target).sum()))
