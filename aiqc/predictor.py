"""Predicting on raw rows without a database: a :class:`Predictor` holds everything a trained
job needs to turn new rows into predictions (the feature schema, the fitted encoders, the
model, the label's classes) and applies them.

What it takes depends on the dataset, and only its input knows: a :class:`TableInput` checks
raw rows against the stored columns and dtypes; an :class:`ArrayInput` checks images or
sequences against the stored sample shape and dtype (reading files or long frames through the
modality's reader, :func:`aiqc.data.arrays.samples_for_prediction`). Both encode with the
fitted feature encoders and hand numpy features to the same model call and label decoding.

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

__all__ = ["ArrayInput", "FeatureEncoder", "INPUTS", "Predictor", "TableInput", "check_categories", "check_finite",
           "check_rows", "input_kind", "to_frame"]


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


# --- what a predictor takes: one input per kind of dataset -------------------------------------
@dataclass(frozen=True)
class FeatureEncoder:
    """One fitted feature encoder as a predictor applies it: the raw ``columns`` it takes, the
    fitted scikit-learn transformer, the names of its ``output_columns``, its class. An image or
    sequence encoder takes every channel (its columns and output columns are the channel names)."""

    columns: list[str]
    fitted: Any
    output_columns: list[str]
    class_path: str


def _describe_encoders(encoders: Sequence[FeatureEncoder]) -> list[dict[str, Any]]:
    """The encoders as an exported manifest lists them (the fitted ones travel in a pickle)."""
    return [{"columns": e.columns, "output_columns": e.output_columns, "class_path": e.class_path} for e in encoders]


def _encoders_from(described: Sequence[dict[str, Any]], fitted: Sequence[Any]) -> list[FeatureEncoder]:
    """The encoders back from a manifest's descriptions and their unpickled fitted transformers."""
    return [FeatureEncoder(list(d["columns"]), f, list(d["output_columns"]), d.get("class_path", ""))
            for d, f in zip(described, fitted)]


class TableInput:
    """Raw rows of a table, as a predictor takes them: the feature columns and their dtypes the
    model was trained on, the label and excluded columns (present or not, ignored), and the fitted
    feature encoders that turn the rows into the model's numbers."""

    #: the exported format version that first held this kind of input (older aiqc cannot read it)
    format_version = 1

    modality = "tabular"
    #: the keys an exported manifest's ``features`` must hold for this kind of input
    manifest_keys = ("columns", "dtypes")

    def __init__(self, feature_columns: Sequence[str], dtypes: dict[str, str], label_column: str,
                 excluded: Sequence[str] | None, encoders: Sequence[FeatureEncoder]) -> None:
        self.feature_columns = list(feature_columns)
        self.dtypes = {c: str(dtypes[c]) for c in self.feature_columns}
        self.label_column = label_column
        self.excluded = list(excluded or [])
        self.encoders = list(encoders)

    @property
    def passthrough_columns(self) -> list[str]:
        """Feature columns no encoder claims: they reach the model as numbers (bools as 0/1)."""
        claimed = {c for e in self.encoders for c in e.columns}
        return [c for c in self.feature_columns if c not in claimed]

    def describe(self) -> str:
        """What the model takes, for a predictor's repr."""
        return f"{len(self.feature_columns)} feature columns"

    def features(self, df: Any, stacklevel: int) -> tuple[Any, Any]:
        """(the model's features as numpy, the index of the returned predictions) for raw rows;
        warnings are attributed ``stacklevel`` frames up from :func:`check_categories`."""
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
        return encoded.to_numpy(), df.index

    def training_samples(self, dataset: Any, rows: Any) -> "pd.DataFrame":
        """Raw rows of the training ``dataset`` at positions ``rows``, as :meth:`features` takes them."""
        return dataset.to_pandas(self.feature_columns, rows)

    def to_manifest(self) -> dict[str, Any]:
        """The ``features`` section of an exported manifest."""
        return {"columns": self.feature_columns, "dtypes": self.dtypes, "excluded": self.excluded,
                "encoders": _describe_encoders(self.encoders), "passthrough": self.passthrough_columns}

    @classmethod
    def from_manifest(cls, features: dict[str, Any], label_column: str, fitted: Sequence[Any]) -> "TableInput":
        """The input back from an exported manifest's ``features`` and the unpickled encoders."""
        return cls(features["columns"], features["dtypes"], label_column, features.get("excluded"),
                   _encoders_from(features.get("encoders") or [], fitted))


class ArrayInput:
    """Images or sequences, as a predictor takes them: numpy arrays of the stored sample shape
    (one sample, or N of them; a grayscale image may come without its channel axis), or what
    the modality's reader takes (image files or a folder; a long DataFrame of sequences), read
    with the dataset's recorded ``settings`` (resize, color mode, padding). Samples are cast to
    the stored ``dtype`` (refused when that would change a value), then encoded channel by
    channel by the fitted feature encoders."""

    #: the exported format version that first held images and sequences
    format_version = 2

    #: the keys an exported manifest's ``features`` must hold for this kind of input
    manifest_keys = ("modality", "sample_shape", "dtype", "channels")

    def __init__(self, modality: str, sample_shape: Sequence[int], dtype: str, channels: Sequence[str],
                 settings: dict[str, Any] | None, encoders: Sequence[FeatureEncoder]) -> None:
        self.modality = str(modality)
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.dtype = str(dtype)
        self.channels = [str(c) for c in channels]
        self.settings = dict(settings or {})
        self.encoders = list(encoders)

    def describe(self) -> str:
        """What the model takes, for a predictor's repr."""
        return f"{self.modality}s of shape {self.sample_shape}"

    def features(self, samples: Any, stacklevel: int) -> tuple[Any, Any]:
        """(the encoded samples, float32 in the stored layout, the index 0..n-1 of the returned
        predictions) for new samples; ``stacklevel`` is unused (no warnings here)."""
        import numpy as np
        import pandas as pd

        from aiqc.data.arrays import encode_samples, samples_for_prediction

        array = samples_for_prediction(samples, self.modality, self.sample_shape, self.settings, "samples")
        array = _cast_samples(array, self.dtype, "samples")
        try:
            encoded = encode_samples(array, [e.fitted for e in self.encoders], self.channels)
        except (ValueError, TypeError) as error:
            raise ValidationError(f"samples: expected values the stored encoders were fit on; encoding failed: "
                                  f"{error}") from error
        bad = np.flatnonzero(~np.isfinite(encoded.reshape(len(encoded), -1)).all(axis=1))
        if len(bad):
            raise ValidationError(f"samples: expected {self.modality}s that encode to finite numbers; samples "
                                  f"{bad[:10].tolist()!r} gave NaN or inf through the stored encoders.")
        return encoded, pd.RangeIndex(len(encoded))

    def training_samples(self, dataset: Any, rows: Any) -> Any:
        """The stored samples of the training ``dataset`` at positions ``rows``, as :meth:`features` takes them."""
        return dataset.to_array(rows)

    def to_manifest(self) -> dict[str, Any]:
        """The ``features`` section of an exported manifest."""
        return {"modality": self.modality, "sample_shape": list(self.sample_shape), "dtype": self.dtype,
                "channels": self.channels, "settings": self.settings, "encoders": _describe_encoders(self.encoders)}

    @classmethod
    def from_manifest(cls, features: dict[str, Any], label_column: str, fitted: Sequence[Any]) -> "ArrayInput":
        """The input back from an exported manifest's ``features`` and the unpickled encoders."""
        return cls(features["modality"], features["sample_shape"], features["dtype"], features["channels"],
                   features.get("settings"), _encoders_from(features.get("encoders") or [], fitted))


#: a manifest's ``features.modality`` (absent: a table) -> the kind of input it describes
INPUTS: dict[str, type[TableInput] | type[ArrayInput]] = {
    TableInput.modality: TableInput, "image": ArrayInput, "sequence": ArrayInput}


def input_kind(features: Any) -> type[TableInput] | type[ArrayInput] | None:
    """The input class an exported manifest's ``features`` section describes (None: a modality
    this aiqc does not know)."""
    modality = features.get("modality", TableInput.modality) if isinstance(features, dict) else TableInput.modality
    return INPUTS.get(modality) if isinstance(modality, str) else None


def _cast_samples(array: Any, dtype: str, parameter: str) -> Any:
    """``array`` in the stored ``dtype``, as training saw it: integers of the stored range as they
    are, whole numbers given as floats; fractions or values out of range for an integer dtype are
    an error (training images of uint8 0..255 given as floats in [0, 1] would predict nonsense)."""
    import numpy as np

    stored = np.dtype(dtype)
    if array.dtype == stored:
        return array
    if stored.kind in "iu":
        info = np.iinfo(stored)
        if array.dtype.kind == "f":
            fractional = np.flatnonzero((array != np.round(array)).reshape(len(array), -1).any(axis=1))
            if len(fractional):
                raise ValidationError(
                    f"{parameter}: expected whole numbers of dtype {stored} (between {info.min} and {info.max}) as in "
                    f"the training data; received dtype {array.dtype} with fractions in sample(s) "
                    f"{fractional[:10].tolist()!r}. Scale them back to the training range first.")
        outside = np.flatnonzero(((array < info.min) | (array > info.max)).reshape(len(array), -1).any(axis=1))
        if len(outside):
            raise ValidationError(
                f"{parameter}: expected values of dtype {stored} (between {info.min} and {info.max}) as in the "
                f"training data; received dtype {array.dtype} with values out of that range in sample(s) "
                f"{outside[:10].tolist()!r}.")
    return array.astype(stored)


# --- the predictor -------------------------------------------------------------------------------
class Predictor:
    """A trained job's way from raw rows (or images, or sequences) to predictions, with no
    database behind it.

    Built by ``job.predict`` from the database, or by ``aiqc.load_predictor(path)`` from an
    exported file (then :attr:`manifest` describes the job it came from: its id, metrics,
    hyperparameters and the versions it was made under). Its :attr:`input` (a
    :class:`TableInput` or an :class:`ArrayInput`) checks and encodes what it is given; the
    rest is the same for every kind of dataset. Call :meth:`predict`.
    """

    def __init__(self, *, library: Any, analysis_type: Any, input: TableInput | ArrayInput, label_column: str,
                 label_encoder: Any, class_names: Sequence[Any], model: Any = None,
                 fn_predict: Callable[..., Any] | None = None, job_id: int | None = None,
                 manifest: dict[str, Any] | None = None, load_model: Callable[[], Any] | None = None) -> None:
        from aiqc.analysis import AnalysisType
        from aiqc.backends import parse_library

        self.library = parse_library(library)
        self.analysis_type: AnalysisType = AnalysisType.parse(analysis_type)
        self.input = input
        self.label_column = label_column
        self.label_encoder = label_encoder
        self.class_names = list(class_names)
        if (model is None) == (load_model is None):
            raise TypeError("Predictor: expected a model or a load_model function, one of the two")
        self._model = model
        self._load_model = load_model
        self.fn_predict = fn_predict
        self.job_id = job_id
        self._manifest = dict(manifest or {})

    # --- what it is --------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The model, loaded on first use when given as ``load_model`` (so that rows that fail
        their checks fail before a deep-learning library is imported and a model read)."""
        if self._model is None:
            self._model = self._load_model()
        return self._model

    @property
    def backend(self) -> "Backend":
        """The deep-learning backend that runs the model."""
        from aiqc.backends import get_backend

        return get_backend(self.library)

    @property
    def modality(self) -> str:
        """What it predicts on: ``'tabular'``, ``'image'`` or ``'sequence'``."""
        return self.input.modality

    @property
    def encoders(self) -> list[FeatureEncoder]:
        """The fitted feature encoders, in the order they are applied."""
        return list(self.input.encoders)

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
        return (f"<Predictor {job}: {self.library} {self.analysis_type}, {self.input.describe()} "
                f"-> {self.label_column!r} ({what})>")

    # --- predicting ------------------------------------------------------------------------------
    def predict(self, df: Any) -> "pd.DataFrame":
        """Predictions: a ``prediction`` column in the label's original values, plus
        ``probability_<class>`` columns for classification.

        A table's predictor takes raw rows (a DataFrame, a dict for one row, or a list of
        dicts) and returns them indexed like ``df`` (0..n-1 for dicts); the label and the
        excluded columns may be present, and are ignored. Categories the encoders never saw
        warn (or fail, where the encoder refuses them); rows that encode to NaN/inf fail,
        naming the rows and columns.

        An image or sequence predictor takes a numpy array of samples (N, *shape) or one sample
        (a grayscale image may be (H, W) or (N, H, W)), image files or a folder of them, or a
        long DataFrame of sequences (read as the training data was: resize, color mode,
        padding); the result is indexed 0..n-1, in the order of the samples. A wrong shape,
        NaN, or values the stored dtype cannot hold are an error naming ``samples``."""
        return self._predict(df, stacklevel=4)  # warn at our caller: check_categories, _predict, predict, caller

    def _predict(self, df: Any, stacklevel: int) -> "pd.DataFrame":
        """:meth:`predict`, its warnings attributed ``stacklevel`` frames up from :func:`check_categories`."""
        import pandas as pd

        features, index = self.input.features(df, stacklevel + 1)
        backend, analysis = self.backend, self.analysis_type
        if self.fn_predict is None:
            result = backend.predict(self.model, features, analysis)
            predictions, probabilities = result.predictions, result.probabilities
        else:
            samples = backend.to_samples(features, None, analysis)
            predictions, probabilities = (backend.to_numpy(v) for v in self.fn_predict(self.model, samples))
        columns = analysis.spec.decode(predictions, probabilities, self.label_encoder, self.class_names)
        return pd.DataFrame(columns, index=index)
