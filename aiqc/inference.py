"""Predicting on new raw rows with a stored job: the same encoders, the stored model,
labels decoded back to their original values."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aiqc import caches
from aiqc.data.frames import is_numeric
from aiqc.exceptions import DataWarning, ValidationError
from aiqc.states import JobState

if TYPE_CHECKING:
    import pandas as pd


def to_frame(rows: Any) -> "pd.DataFrame":
    """Raw rows as a DataFrame: a DataFrame as it is, a dict as one row (column -> value), a
    list of such dicts as rows (a key missing from a dict is a missing value)."""
    import pandas as pd

    if isinstance(rows, pd.DataFrame):
        return rows
    expected = "a pandas DataFrame of raw rows, a dict (one row: column -> value) or a list of dicts"
    if isinstance(rows, dict):
        rows = [rows]
    elif not isinstance(rows, (list, tuple)) or not all(isinstance(r, dict) for r in rows):
        raise ValidationError.expected("df", expected, rows)
    for position, row in enumerate(rows):
        listed = [k for k, v in row.items() if isinstance(v, (list, tuple, dict, set)) or getattr(v, "ndim", 0) > 0]
        if listed:
            raise ValidationError(
                f"df: expected one value per column in each row dict; received lists in {listed[:5]!r} of row "
                f"{position}. For columns of values pass pandas.DataFrame(...)."
            )
    return pd.DataFrame(list(rows))


def check_rows(df: Any, feature_columns: list[str], dtypes: dict[str, str], label_column: str,
               excluded: list[str] | None = None) -> "pd.DataFrame":
    """Raw rows with every feature column, of compatible dtypes, as a DataFrame of the feature
    columns (index 0..n-1). ``df`` may be a DataFrame, a dict (one row) or a list of dicts; the
    label column and the ``excluded`` columns (an ID, ...) may be present and are ignored.
    Numeric columns are cast to the stored dtype; bool columns take True/False (or 0/1), date
    columns dates or text that reads as dates."""
    df = to_frame(df)
    if df.empty:
        raise ValidationError(f"df: expected at least one row; received an empty DataFrame of shape {df.shape}.")
    missing = [c for c in feature_columns if c not in df.columns]
    if missing:
        raise ValidationError(f"df: expected the feature columns the model was trained on; received a DataFrame "
                              f"missing {missing!r}.")
    ignored = set(feature_columns) | {label_column} | set(excluded or [])
    extra = [c for c in df.columns if c not in ignored]
    if extra:
        raise ValidationError(f"df: expected only the feature columns (the label and the excluded columns may be "
                              f"there too, and are ignored); received extra columns {extra!r}.")
    frame = df[feature_columns].copy()
    for column in feature_columns:
        frame[column] = _cast(frame[column], column, dtypes[column])
    return frame.reset_index(drop=True)


def _cast(series: "pd.Series", column: str, stored_name: str) -> "pd.Series":
    """One received column in the stored dtype's kind, or a ValidationError naming it."""
    import pandas as pd

    stored = pd.api.types.pandas_dtype(stored_name)
    received = series.dtype
    wrong = ValidationError(f"df[{column!r}]: expected dtype {stored_name} as in the training data; received {received}.")
    if is_numeric(stored):
        if not is_numeric(received):
            if not pd.api.types.is_object_dtype(received) or pd.api.types.is_bool_dtype(received):
                raise wrong
            try:  # dicts with None, or numbers as objects
                series = pd.to_numeric(series)
            except (ValueError, TypeError) as error:
                raise wrong from error
        if series.dtype != stored:
            if series.isna().any() and pd.api.types.is_integer_dtype(stored):
                raise ValidationError(f"df[{column!r}]: expected integers without missing values; received NaN.")
            if pd.api.types.is_integer_dtype(stored) and pd.api.types.is_float_dtype(series.dtype):
                fractional = series[(series != series.round()) | series.isin([float("inf"), float("-inf")])]
                if len(fractional):  # astype would truncate them silently
                    raise ValidationError(f"df[{column!r}]: expected integers as in the training data; received "
                                          f"{fractional.iloc[:3].tolist()!r}.")
            if pd.api.types.is_integer_dtype(stored):  # astype wraps (1e30) or overflows (2**70) out of range
                import numpy as np

                info = np.iinfo(getattr(stored, "numpy_dtype", stored))  # Int64 -> int64
                numbers = pd.to_numeric(series, errors="coerce")
                outside = series[(numbers < info.min) | (numbers > info.max)]
                if len(outside):
                    raise ValidationError(f"df[{column!r}]: expected integers of dtype {stored_name} (between "
                                          f"{info.min} and {info.max}) as in the training data; received "
                                          f"{outside.iloc[:3].tolist()!r}.")
            try:
                series = series.astype(stored)
            except (ValueError, TypeError, OverflowError) as error:
                raise wrong from error
        return series
    if pd.api.types.is_bool_dtype(stored):
        if pd.api.types.is_bool_dtype(received):
            return series
        present = series.dropna()
        if not present.map(lambda v: isinstance(v, (bool, int, float)) and v in (0, 1)).all():
            raise wrong
        # missing values stay missing (and are refused after encoding)
        values = [None if pd.isna(v) else bool(v) for v in series]
        return pd.Series(pd.array(values, dtype="boolean"), index=series.index, name=series.name)
    if is_numeric(received):
        raise wrong
    if pd.api.types.is_datetime64_any_dtype(stored) and not pd.api.types.is_datetime64_any_dtype(received):
        try:
            return pd.to_datetime(series).astype(stored)
        except (ValueError, TypeError, OverflowError) as error:
            raise ValidationError(f"df[{column!r}]: expected dates (dtype {stored_name}) as in the training data; "
                                  f"received values that are not: {error}") from error
    return series


def check_categories(splitset: Any, frame: "pd.DataFrame", fold: int | None, index: list) -> None:
    """Values the fitted OneHotEncoder / OrdinalEncoder feature encoders never saw in training:
    an error where the encoder refuses them (``handle_unknown='error'``), else a ``DataWarning``
    naming the column, the values and the rows (``index``: the caller's row labels)."""
    import warnings

    from aiqc.data.encode import unknown_categories

    for encoder in splitset.encoders_for(fold, side="feature"):
        try:
            found = unknown_categories(encoder.fitted, encoder.columns, frame[encoder.columns])
        except (ValueError, TypeError, KeyError):
            continue  # the encoding itself reports what is wrong
        for unknown in found:
            rows = [index[i] for i in unknown.rows[:10]]
            more = f" and {len(unknown.rows) - 10} more" if len(unknown.rows) > 10 else ""
            if unknown.refused:
                raise ValidationError(
                    f"df: expected values the stored encoders were fit on; received in column {unknown.column!r} "
                    f"the unknown categories {unknown.values!r} (rows {rows!r}{more}), which the {unknown.encoder} "
                    "never saw in training and refuses. Fit with OneHotEncoder(handle_unknown='ignore') to accept them."
                )
            warnings.warn(
                f"df: column {unknown.column!r} holds categories the encoder never saw in training: {unknown.values!r} "
                f"(rows {rows!r}{more}); {unknown.encoder} encodes them as it does unknown values, so these "
                "predictions rest on less information.",
                DataWarning, stacklevel=4,  # the caller of job.predict
            )


def check_finite(encoded: "pd.DataFrame", frame: "pd.DataFrame", index: list) -> None:
    """Encoded features must be finite: rows whose encoding holds NaN or +-inf are an error naming
    the rows (``index``: the caller's row labels), the encoded columns and the raw columns missing
    a value there."""
    import numpy as np

    values = encoded.to_numpy()
    if values.dtype.kind not in "fc":
        return
    with np.errstate(invalid="ignore", over="ignore"):
        if np.isfinite(np.sum(values)):
            return
    bad = ~np.isfinite(values)
    rows = np.flatnonzero(bad.any(axis=1))
    if not len(rows):
        return
    columns = [str(c) for c, b in zip(encoded.columns, bad.any(axis=0)) if b]
    raw = [str(c) for c in frame.columns[frame.iloc[rows].isna().any(axis=0).to_numpy()]]
    shown = [index[i] for i in rows[:10]]
    more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
    missing = f"; missing raw values in {raw[:10]!r}" if raw else ""
    raise ValidationError(
        f"df: expected rows that encode to finite numbers; received rows {shown!r}{more} with NaN/inf in the "
        f"encoded columns {columns[:10]!r}{missing}. Fill those values, or train with an encoder that imputes, "
        "e.g. make_pipeline(SimpleImputer(), StandardScaler())."
    )


@caches.register
@lru_cache(maxsize=4)
def _model(job_id: int, database: str) -> Any:
    from aiqc.orm import Job

    return Job.get_by_id(job_id).get_model()


def predict(job: Any, df: Any) -> "pd.DataFrame":
    """Predictions for raw rows (a DataFrame, a dict for one row, or a list of dicts): a
    ``prediction`` column in the label's original values, plus ``probability_<class>``
    columns for classification; indexed like ``df`` (0..n-1 for dicts). Categories the
    encoders never saw warn (or fail, where the encoder refuses them); rows that encode to
    NaN/inf fail, naming the rows and columns."""
    import pandas as pd

    from aiqc.backends import get_backend
    from aiqc.orm.base import database_key

    if job.state is not JobState.COMPLETE:
        raise ValidationError(f"job: expected a {JobState.COMPLETE} job; job {job.id} is {job.state}.")
    experiment = job.queue.experiment
    splitset = experiment.splitset
    feature, label = splitset.feature, splitset.label
    analysis = experiment.analysis_type
    df = to_frame(df)
    index = list(df.index)
    frame = check_rows(df, feature.columns, feature.dataset.dtypes, label.column, feature.columns_excluded)
    fold = job.fold_index
    check_categories(splitset, frame, fold, index)
    try:
        encoded = splitset.encode_features(frame, fold)
    except (ValueError, KeyError, TypeError) as error:
        raise ValidationError(
            f"df: expected values the stored encoders were fit on; encoding failed: {error}"
        ) from error
    check_finite(encoded, frame, index)
    features = encoded.to_numpy()

    backend = get_backend(experiment.library)
    model = _model(job.id, database_key())
    fn_predict = experiment.load_functions().get("fn_predict")
    if fn_predict is None:
        result = backend.predict(model, features, analysis)
        predictions, probabilities = result.predictions, result.probabilities
    else:
        predictions, probabilities = (backend.to_numpy(v) for v in fn_predict(model, backend.to_samples(features, None, analysis)))
    columns = analysis.spec.decode(predictions, probabilities, splitset.label_encoder(fold), splitset.class_names())
    return pd.DataFrame(columns, index=df.index)
