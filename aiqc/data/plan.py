"""Validated plans: everything a pipeline step will write, computed without the database.

Each ``plan_*`` function checks its arguments (raising :class:`ValidationError` with the
parameter, the expectation and the received value) and computes what will be stored.
Writers in :mod:`aiqc.orm` turn plans into rows, so a step either writes all of it or,
having failed validation, nothing.
"""

from __future__ import annotations

import numbers
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from aiqc.data import encode, split
from aiqc.data.frames import check_frame, dtype_names, is_categorical, is_numeric, to_python
from aiqc.exceptions import ValidationError


@dataclass
class DatasetPlan:
    """A checked table to store as a Dataset: the DataFrame, where it came from, its name."""

    df: pd.DataFrame
    source: str
    name: str | None = None
    description: str | None = None

    @property
    def dtypes(self) -> dict[str, str]:
        """Column name -> dtype name of the dataset's columns."""
        return dtype_names(self.df)


@dataclass
class LabelPlan:
    """A checked label column to store as a Label: its dtype, classes and each row's class code."""

    column: str
    dtype: str
    categorical: bool  # text/bool/category, or integer: stratified by class
    classes: list | None  # sorted class values; None for a float label
    values: np.ndarray | None = field(repr=False)  # numeric labels only
    codes: np.ndarray = field(repr=False)  # per row, the index of its value in sorted unique values
    unique_count: int = 0


@dataclass
class FeaturePlan:
    """Checked feature columns to store as a Feature, and the columns excluded."""

    columns: list[str]
    excluded: list[str]


@dataclass
class SplitPlan:
    """Checked split settings and the row indices of each split and fold, to store as a Splitset."""

    size_test: float
    size_validation: float | None
    bin_count: int | None
    fold_count: int | None
    random_state: int
    stratify: str  # "classes", "bins" or "none"
    indices: dict[str, np.ndarray | None]
    folds: list[tuple[np.ndarray, np.ndarray]]


@dataclass
class EncoderPlan:
    """One fitted encoder to store as an Encoder: its spec, side, scope (fold), columns in and out."""

    spec: encode.EncoderSpec
    side: str  # "label" or "feature"
    position: int
    fold_index: int | None
    fitted: Any
    columns: list[str]
    output_columns: list[str]


def plan_dataset(df_or_path: Any, name: str | None = None, description: str | None = None,
                 parameter: str = "df_or_path", parse_dates: list[str] | None = None) -> DatasetPlan:
    """The checked dataset of a DataFrame or a file path (read here), with its name and description.
    ``parse_dates``: columns to read as dates (for a DataFrame, converted in a copy)."""
    from aiqc.data.frames import check_parse_dates, parse_date_columns, read_path
    import os

    dates = check_parse_dates(parse_dates)
    if isinstance(df_or_path, (str, os.PathLike)):
        source = os.fspath(df_or_path)
        df = read_path(df_or_path, parameter, parse_dates=dates)
    else:
        source = "pandas.DataFrame"
        df = check_frame(df_or_path, parameter)
        df = parse_date_columns(df, dates)
    df = check_frame(df, parameter)
    for key, value in (("name", name), ("description", description)):
        if value is not None and not isinstance(value, str):
            raise ValidationError.expected(key, "None or a string", value)
    return DatasetPlan(df=df, source=source, name=name, description=description)


def plan_label(df: pd.DataFrame, column: Any, parameter: str = "label_column") -> LabelPlan:
    """The label ``column`` of ``df``, checked (no missing values, at least 2 distinct), with its
    classes (categorical labels) and each row's class code."""
    if not isinstance(column, str):
        raise ValidationError.expected(parameter, "the name of one column (a string)", column)
    if column not in df.columns:
        raise ValidationError(
            f"{parameter}: expected one of the columns {list(df.columns)[:20]!r}; received {column!r}."
        )
    series = df[column]
    missing = int(series.isna().sum())
    infinite = _infinite_count(series)
    if missing:
        also = f" and {infinite} infinite (inf/-inf) value(s)" if infinite else ""
        raise ValidationError(
            f"{parameter}: expected a label without missing values; received {column!r} with "
            f"{missing} NaN/None value(s){also} out of {len(series)} rows. Drop or fill those rows first."
        )
    if infinite:
        raise ValidationError(
            f"{parameter}: expected a label of finite values; received {column!r} with {infinite} infinite "
            f"(inf/-inf) value(s) out of {len(series)} rows. Drop or replace those rows first."
        )
    categorical = is_categorical(series.dtype) or pd.api.types.is_integer_dtype(series.dtype)
    codes, unique = pd.factorize(series, sort=True)  # hashing: O(n), unlike np.unique's sort
    if len(unique) < 2:
        raise ValidationError(
            f"{parameter}: expected a label with at least 2 distinct values; received {column!r}, "
            f"whose only value is {to_python(np.asarray(unique[:1]))[0]!r}."
        )
    classes = to_python(np.asarray(unique)) if categorical else None
    values = series.to_numpy() if is_numeric(series.dtype) else None  # needed for quantile bins
    return LabelPlan(column=column, dtype=str(series.dtype), categorical=categorical, classes=classes,
                     values=values, codes=codes.astype(np.int64), unique_count=len(unique))


def _infinite_count(series: pd.Series) -> int:
    """How many values of a column are +inf or -inf: in a float column, or as float values held
    in an object or category column (where they would otherwise become a class named inf)."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        categories = series.cat.categories
        infinite = _infinite_mask(np.asarray(categories, dtype=object))
        return int(np.isin(series.cat.codes.to_numpy(), np.flatnonzero(infinite)).sum()) if infinite.any() else 0
    if pd.api.types.is_object_dtype(series.dtype):
        return int(_infinite_mask(series.to_numpy(dtype=object)).sum())
    if not pd.api.types.is_float_dtype(series.dtype):
        return 0
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return int(np.isinf(values).sum())


def _infinite_mask(values: np.ndarray) -> np.ndarray:
    """Per value of an object array, whether it is a float +inf or -inf (text such as 'inf' is not)."""
    import math

    check = np.frompyfunc(lambda v: isinstance(v, (float, np.floating)) and math.isinf(v), 1, 1)
    return check(values).astype(bool) if len(values) else np.zeros(0, dtype=bool)


def plan_feature(df: pd.DataFrame, excluded: Any, label_column: str | None,
                 parameter: str = "feature_cols_excluded") -> FeaturePlan:
    """The feature columns of ``df``: all but the ``excluded`` ones, which must include the label."""
    if excluded is None:
        excluded = []
    elif isinstance(excluded, str):
        excluded = [excluded]
    if not isinstance(excluded, (list, tuple)) or not all(isinstance(c, str) for c in excluded):
        raise ValidationError.expected(parameter, "None, a column name or a list of column names", excluded)
    unknown = [c for c in excluded if c not in df.columns]
    if unknown:
        raise ValidationError(
            f"{parameter}: expected column names of the data {list(df.columns)[:20]!r}; received unknown {unknown!r}."
        )
    columns = [c for c in df.columns if c not in set(excluded)]
    if label_column is not None and label_column in columns:
        raise ValidationError(
            f"{parameter}: expected to exclude the label column {label_column!r} from the features; "
            f"received {list(excluded)!r}. A label among the features leaks the answer."
        )
    if not columns:
        raise ValidationError(f"{parameter}: expected at least one feature column to remain; received {list(excluded)!r}, which excludes them all.")
    return FeaturePlan(columns=columns, excluded=list(excluded))


def _fraction(value: Any, parameter: str, optional: bool) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < float(value) < 1:
        expected = "None or a fraction" if optional else "a fraction"
        raise ValidationError.expected(parameter, f"{expected} between 0 and 1 (exclusive)", value)
    return float(value)


def _count(value: Any, parameter: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 2:
        raise ValidationError.expected(parameter, "None or an integer >= 2", value)
    return int(value)


def plan_splits(label: LabelPlan, size_test: Any = 0.22, size_validation: Any = None,
                fold_count: Any = None, bin_count: Any = None, random_state: Any = None) -> SplitPlan:
    """The checked split sizes and the row indices of each split (and fold), stratified by the
    label's classes or bins; a random ``random_state`` is drawn when None."""
    size_test = _fraction(size_test, "size_test", optional=False)
    size_validation = _fraction(size_validation, "size_validation", optional=True)
    if size_validation is not None and size_test + size_validation >= 1:
        raise ValidationError(
            f"size_test + size_validation: expected a sum below 1 to leave training rows; "
            f"received {size_test} + {size_validation} = {size_test + size_validation:g}."
        )
    fold_count = _count(fold_count, "fold_count")
    bin_count = _count(bin_count, "bin_count")
    if fold_count is not None and size_validation is not None:
        raise ValidationError(
            f"size_validation: expected None when fold_count is set (each fold's held-out rows "
            f"are its validation split); received {size_validation}."
        )
    if bin_count is not None and (label.categorical and not pd.api.types.is_integer_dtype(label.dtype)):
        raise ValidationError(
            f"bin_count: expected None for the categorical label {label.column!r} (dtype {label.dtype}), "
            f"which is stratified by class; received {bin_count}."
        )
    if random_state is None:
        random_state = secrets.randbelow(2**31 - 2)
    elif isinstance(random_state, bool) or not isinstance(random_state, numbers.Integral) or not 0 <= random_state < 2**31 - 1:
        raise ValidationError.expected("random_state", "None or an integer in [0, 2**31 - 2]", random_state)
    random_state = int(random_state)

    strata = split.make_strata(label.codes, label.classes, label.values, bin_count)
    n = len(label.codes)
    counts = split.split_counts(n, size_test, size_validation)
    if counts["train"] < 1:
        raise ValidationError(f"size_test + size_validation: leave no training rows out of {n}; expected at least 1.")
    split.check_splits_hold_strata(strata, counts, label.column)
    indices = split.split_indices(n, counts, strata, random_state)
    folds: list = []
    if fold_count is not None:
        split.check_fold_count(fold_count, strata, indices["train"], label.column)
        folds = split.fold_indices(indices["train"], strata, fold_count, random_state)
    return SplitPlan(size_test, size_validation, bin_count, fold_count, random_state, strata.kind, indices, folds)


def fit_scopes(splits: SplitPlan) -> list[tuple[int | None, np.ndarray, list[np.ndarray]]]:
    """Where encoders are fit: the whole train split, then each fold's training rows.
    Each scope lists the rows the fit must be able to transform (the other splits)."""
    held = [i for s, i in splits.indices.items() if s != "train" and i is not None]
    scopes = [(None, splits.indices["train"], held)]
    for index, (fold_train, fold_held_out) in enumerate(splits.folds):
        scopes.append((index, fold_train, [fold_held_out]))
    return scopes


#: an encoder that fills missing values, for messages (sklearn.pipeline.make_pipeline,
#: sklearn.impute.SimpleImputer, sklearn.preprocessing.StandardScaler)
IMPUTER_HINT = "make_pipeline(SimpleImputer(), StandardScaler())"


def plan_encoders(df: pd.DataFrame, label: LabelPlan, feature: FeaturePlan, splits: SplitPlan,
                  label_encoder: Any = None, feature_encoders: Any = None) -> list[EncoderPlan]:
    """Fit every encoder on training rows only (and per fold), checking it can transform
    the held-out rows too, so a bad encoder fails now rather than mid-experiment.

    Features must come out as finite numbers: each feature encoder's output on every row of
    its scope (the rows it was fit on and the held-out rows it must transform), and the
    numeric columns that pass through unencoded, are checked for NaN and +-inf. Each row is
    transformed once per scope, a chunk at a time."""
    label_spec = encode.parse_label_encoder(label_encoder)
    feature_specs = encode.parse_feature_encoders(feature_encoders)
    features = df[feature.columns]
    passthrough = encode.resolve_feature_columns(feature_specs, features.dtypes, features)
    encode.check_date_columns(feature_specs, features)
    _check_no_inf(features)
    _check_passthrough_finite(features, passthrough)
    if label_spec is not None:
        label_spec.claimed = [label.column]

    plans: list[EncoderPlan] = []
    sides = [("label", 0, label_spec)] if label_spec else []
    sides += [("feature", i, s) for i, s in enumerate(feature_specs)]
    for side, position, spec in sides:
        columns = spec.claimed
        frame = df[columns]
        for fold_index, fit_rows, other_rows in fit_scopes(splits):
            fitted = encode.fit(spec, frame.iloc[fit_rows])
            if side == "label":
                width = _label_width(spec, fitted, frame, fit_rows, other_rows)
            else:
                if fold_index is None:
                    encode.warn_many_categories(spec, fitted, len(fit_rows))
                    encode.warn_one_hot_dates(spec, fitted, features)
                width = _check_feature_scope(spec, fitted, frame, fold_index, fit_rows, other_rows)
            plans.append(EncoderPlan(spec, side, position, fold_index, fitted, columns,
                                     encode.output_names(fitted, columns, width)))
    return plans


def _held_out_error(spec: encode.EncoderSpec, error: Exception) -> ValidationError:
    return ValidationError(
        f"{spec.describe()}: expected an encoder fit on training rows to transform the "
        f"held-out rows too; it failed on them: {error}. For unseen categories use e.g. "
        "OneHotEncoder(handle_unknown='ignore')."
    )


def _label_width(spec: encode.EncoderSpec, fitted: Any, frame: pd.DataFrame, fit_rows: np.ndarray,
                 other_rows: list[np.ndarray]) -> int:
    """The label encoder's output width, checking it transforms the held-out rows."""
    width = None
    for rows in other_rows:
        try:
            width = encode.transform(fitted, frame.iloc[rows]).shape[1]
        except (ValueError, TypeError, KeyError) as error:
            raise _held_out_error(spec, error) from error
    if width is None:
        width = encode.transform(fitted, frame.iloc[fit_rows[:1]]).shape[1]
    return width


def _check_feature_scope(spec: encode.EncoderSpec, fitted: Any, frame: pd.DataFrame, fold_index: int | None,
                         fit_rows: np.ndarray, other_rows: list[np.ndarray]) -> int:
    """Transform every row of a scope once (held-out rows, then the rows the encoder was fit
    on), checking the output is numeric and finite; return its width."""
    width = None
    counts: dict[str, list[np.ndarray]] = {}  # "training" / "held-out" -> [NaN per column, inf per column]
    for group, rows in [("held-out", r) for r in other_rows] + [("training", fit_rows)]:
        try:
            chunks = encode.transform_chunks(fitted, frame, rows)
            for out in chunks:
                out = encode.numeric_output(out, spec.describe())
                width = out.shape[1]
                bad = encode.nonfinite_counts(out)
                if bad is not None:
                    total = counts.setdefault(group, [np.zeros(width, np.int64), np.zeros(width, np.int64)])
                    total[0] += bad[0]
                    total[1] += bad[1]
        except ValidationError:
            raise
        except (ValueError, TypeError, KeyError) as error:
            if group == "held-out":
                raise _held_out_error(spec, error) from error
            raise ValidationError(
                f"{spec.describe()}: expected an encoder that transforms the rows it was fit on; it failed "
                f"on them: {error}"
            ) from error
    if counts:
        names = encode.output_names(fitted, spec.claimed, width)
        scope = "the train split's encoder" if fold_index is None else f"fold {fold_index}'s encoder"
        raise ValidationError(
            f"{spec.describe()}: expected finite encoded features; received {_describe_nonfinite(names, counts)} "
            f"in the output of {scope}. Impute inside the encoder, e.g. "
            f"dict(sklearn_preprocess={IMPUTER_HINT}, columns={spec.claimed[:10]!r}), fill or drop those "
            "rows first, or exclude the columns; replace inf with NaN before imputing."
        )
    if width is None:  # no rows to transform at all
        width = encode.transform(fitted, frame.iloc[fit_rows[:1]]).shape[1]
    return width


def _describe_nonfinite(names: list[str], counts: dict[str, list[np.ndarray]]) -> str:
    """e.g. ``'age' (NaN in 12 training and 3 held-out rows), 'ratio' (inf in 1 training row)``."""
    parts = []
    for index, name in enumerate(names):
        pieces = []
        for kind, which in (("NaN", 0), ("inf", 1)):
            per_group = [f"{int(counts[g][which][index])} {g}" for g in ("training", "held-out")
                         if g in counts and counts[g][which][index]]
            if per_group:
                pieces.append(f"{kind} in {' and '.join(per_group)} row(s)")
        if pieces:
            parts.append(f"{name!r} ({'; '.join(pieces)})")
    shown = ", ".join(parts[:10]) + (f" and {len(parts) - 10} more columns" if len(parts) > 10 else "")
    return shown


def _check_no_inf(features: pd.DataFrame) -> None:
    """No feature value may be +-inf: transformers refuse it (an imputer included) or carry it on."""
    problems = []
    for column, dtype in features.dtypes.items():
        if not pd.api.types.is_float_dtype(dtype):
            continue
        series = features[column]
        values = series.to_numpy() if isinstance(dtype, np.dtype) else series.to_numpy(np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore", over="ignore"):
            total = np.sum(values)
        if np.isfinite(total):
            continue  # one pass, no copy, in the usual case
        count = int(np.isinf(values).sum())
        if count:
            problems.append(f"{column!r} ({count} inf of {len(features)} rows)")
    if problems:
        raise ValidationError(
            f"feature_encoders: expected feature values without inf; received {', '.join(problems[:10])}. Replace "
            f"them with NaN first (df = df.replace([np.inf, -np.inf], np.nan)), then impute inside the encoder, e.g. "
            f"dict(sklearn_preprocess={IMPUTER_HINT}, columns=[...]), or drop those rows."
        )


def _check_passthrough_finite(features: pd.DataFrame, passthrough: list[str]) -> None:
    """The numeric columns no encoder claims go to the model as they are: no NaN, no +-inf."""
    problems = []
    for column in passthrough:
        series = features[column]
        if isinstance(series.dtype, np.dtype) and series.dtype.kind in "iub":
            continue  # numpy integers and bools cannot be missing
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
        nan, inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
        if nan or inf:
            counts = " and ".join(f"{n} {kind}" for n, kind in ((nan, "NaN"), (inf, "inf")) if n)
            problems.append((column, counts))
    if problems:
        columns = [c for c, _ in problems]
        listed = ", ".join(f"{c!r} ({counts} of {len(features)} rows)" for c, counts in problems[:10])
        raise ValidationError(
            f"feature_encoders: expected finite values in the numeric columns no encoder claims (they pass "
            f"through unencoded); received {listed}. Impute them inside an encoder, e.g. "
            f"dict(sklearn_preprocess={IMPUTER_HINT}, columns={columns[:10]!r}), fill or drop "
            "those rows first, or exclude the columns with feature_cols_excluded; replace inf with NaN before imputing."
        )
