"""Predicting on raw rows without a database: a :class:`Predictor` holds everything a trained
job needs to turn new rows into predictions (the feature schema, the fitted encoders, the
model, the label's classes) and applies them.

``job.predict`` builds one from the database (:func:`aiqc.inference.predictor_for`) and
``aiqc.load_predictor`` from an exported file (:mod:`aiqc.export`); both call the same
:meth:`Predictor.predict`, so an exported predictor gives what ``job.predict`` gives. This
module reads no database: it imports neither :mod:`aiqc.orm` nor :mod:`aiqc.database`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from aiqc.data.frames import is_numeric
from aiqc.exceptions import DataWarning, ValidationError

if TYPE_CHECKING:
    import pandas as pd

    from aiqc.backends import Backend

__all__ = ["FeatureEncoder", "Predictor", "check_categories", "check_finite", "check_rows", "to_frame"]


# --- checking raw rows ---------------------------------------------------------------------------
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


def check_categories(encoders: Sequence[Any], frame: "pd.DataFrame", index: list, stacklevel: int = 2) -> None:
    """Values the fitted OneHotEncoder / OrdinalEncoder feature encoders never saw in training:
    an error where the encoder refuses them (``handle_unknown='error'``), else a ``DataWarning``
    naming the column, the values and the rows (``index``: the caller's row labels). Each of
    ``encoders`` has ``columns`` and ``fitted``; ``stacklevel`` is the warning's, counted from here."""
    from aiqc.data.encode import unknown_categories

    for encoder in encoders:
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
                DataWarning, stacklevel=stacklevel,
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


# --- the predictor -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeatureEncoder:
    """One fitted feature encoder as a predictor applies it: the raw ``columns`` it takes, the
    fitted scikit-learn transformer, the names of its ``output_columns``, its class."""

    columns: list[str]
    fitted: Any
    output_columns: list[str]
    class_path: str


class Predictor:
    """A trained job's way from raw rows to predictions, with no database behind it.

    Built by ``job.predict`` from the database, or by ``aiqc.load_predictor(path)`` from an
    exported file (then :attr:`manifest` describes the job it came from: its id, metrics,
    hyperparameters and the versions it was made under). Call :meth:`predict`.
    """

    def __init__(self, *, library: Any, analysis_type: Any, feature_columns: Sequence[str], dtypes: dict[str, str],
                 label_column: str, excluded: Sequence[str] | None, encoders: Sequence[FeatureEncoder],
                 label_encoder: Any, class_names: Sequence[Any], model: Any,
                 fn_predict: Callable[..., Any] | None = None, job_id: int | None = None,
                 manifest: dict[str, Any] | None = None) -> None:
        from aiqc.analysis import AnalysisType
        from aiqc.backends import parse_library

        self.library = parse_library(library)
        self.analysis_type: AnalysisType = AnalysisType.parse(analysis_type)
        self.feature_columns = list(feature_columns)
        self.dtypes = {c: str(dtypes[c]) for c in self.feature_columns}
        self.label_column = label_column
        self.excluded = list(excluded or [])
        self.encoders = list(encoders)
        self.label_encoder = label_encoder
        self.class_names = list(class_names)
        self.model = model
        self.fn_predict = fn_predict
        self.job_id = job_id
        self._manifest = dict(manifest or {})

    # --- what it is --------------------------------------------------------------------------
    @property
    def backend(self) -> "Backend":
        """The deep-learning backend that runs the model."""
        from aiqc.backends import get_backend

        return get_backend(self.library)

    @property
    def passthrough_columns(self) -> list[str]:
        """Feature columns no encoder claims: they reach the model as numbers (bools as 0/1)."""
        claimed = {c for e in self.encoders for c in e.columns}
        return [c for c in self.feature_columns if c not in claimed]

    @property
    def manifest(self) -> dict[str, Any]:
        """What an exported file says about itself and its job (``{}`` for a predictor built
        from the database): format, job id, hyperparameters, metrics, versions, sha256 of its files."""
        return dict(self._manifest)

    @property
    def classes(self) -> list:
        """The label's classes in the order of the model's outputs (``[]`` for regression)."""
        return list(self.class_names)

    @property
    def metrics(self) -> dict[str, dict[str, float | None]]:
        """``{split: {metric: value}}`` the job measured (exported predictors; ``{}`` otherwise)."""
        return dict(self._manifest.get("metrics") or {})

    @property
    def versions(self) -> dict[str, Any]:
        """``{"exported": {...}, "recorded": {...}}``: the versions of Python and the libraries when
        the predictor was exported, and when its job was recorded (exported predictors; ``{}`` otherwise)."""
        return dict(self._manifest.get("versions") or {})

    def __repr__(self) -> str:
        job = f"job {self.job_id}" if self.job_id is not None else "job ?"
        what = f"{len(self.class_names)} classes" if self.classes else "values"
        return (f"<Predictor {job}: {self.library} {self.analysis_type}, {len(self.feature_columns)} feature columns "
                f"-> {self.label_column!r} ({what})>")

    # --- predicting ------------------------------------------------------------------------------
    def predict(self, df: "pd.DataFrame | dict | list[dict]") -> "pd.DataFrame":
        """Predictions for raw rows (a DataFrame, a dict for one row, or a list of dicts): a
        ``prediction`` column in the label's original values, plus ``probability_<class>``
        columns for classification; indexed like ``df`` (0..n-1 for dicts). The label and the
        excluded columns may be present, and are ignored. Categories the encoders never saw
        warn (or fail, where the encoder refuses them); rows that encode to NaN/inf fail,
        naming the rows and columns."""
        return self._predict(df, stacklevel=4)  # warn at our caller: check_categories, _predict, predict, caller

    def _predict(self, df: Any, stacklevel: int) -> "pd.DataFrame":
        """:meth:`predict`, its warnings attributed ``stacklevel`` frames up from :func:`check_categories`."""
        import pandas as pd

        from aiqc.data.encode import encode_features

        df = to_frame(df)
        index = list(df.index)
        frame = check_rows(df, self.feature_columns, self.dtypes, self.label_column, self.excluded)
        check_categories(self.encoders, frame, index, stacklevel=stacklevel)
        try:
            encoded = encode_features(frame, self.encoders, self.feature_columns)
        except (ValueError, KeyError, TypeError) as error:
            raise ValidationError(
                f"df: expected values the stored encoders were fit on; encoding failed: {error}"
            ) from error
        check_finite(encoded, frame, index)
        features = encoded.to_numpy()

        backend, analysis = self.backend, self.analysis_type
        if self.fn_predict is None:
            result = backend.predict(self.model, features, analysis)
            predictions, probabilities = result.predictions, result.probabilities
        else:
            samples = backend.to_samples(features, None, analysis)
            predictions, probabilities = (backend.to_numpy(v) for v in self.fn_predict(self.model, samples))
        columns = analysis.spec.decode(predictions, probabilities, self.label_encoder, self.class_names)
        return pd.DataFrame(columns, index=df.index)
