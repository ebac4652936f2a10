"""Encoder specifications: which scikit-learn transformer applies to which columns,
fitting on training rows, and applying fitted encoders to any rows."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from aiqc.data.frames import date_kind, is_datetime, is_numeric
from aiqc.exceptions import DataWarning, ValidationError, _show

STRING_DTYPES = {"object", "str", "string"}
ABSTRACT_DTYPES = {
    "number": pd.api.types.is_numeric_dtype,
    "integer": pd.api.types.is_integer_dtype,
    "floating": pd.api.types.is_float_dtype,
    "bool": pd.api.types.is_bool_dtype,
    "category": lambda d: isinstance(d, pd.CategoricalDtype),
}


@dataclass
class EncoderSpec:
    """One ``dict(sklearn_preprocess=..., dtypes=[...] | columns=[...])`` as given."""

    transformer: Any
    parameter: str  # "label_encoder" or "feature_encoders[i]", used in messages
    dtypes: list[str] | None = None
    columns: list[str] | None = None
    claimed: list[str] = field(default_factory=list)  # resolved columns, in frame order

    @property
    def class_path(self) -> str:
        """The transformer's class as ``module.QualifiedName``."""
        cls = type(self.transformer)
        return f"{cls.__module__}.{cls.__qualname__}"

    def describe(self) -> str:
        """The parameter and transformer class, for messages, e.g. ``feature_encoders[0] (StandardScaler)``
        or ``feature_encoders[0] (Pipeline: SimpleImputer, StandardScaler)``."""
        return f"{self.parameter} ({transformer_name(self.transformer)})"


def transformer_name(transformer: Any) -> str:
    """A transformer's class name; a Pipeline's lists its steps' classes."""
    steps = getattr(transformer, "steps", None)
    if isinstance(steps, list):
        return f"{type(transformer).__name__}: " + ", ".join(
            type(step).__name__ if not isinstance(step, str) else step for _, step in steps)
    return type(transformer).__name__


def _check_transformer(value: Any, parameter: str) -> Any:
    if isinstance(value, type):
        raise ValidationError(
            f"{parameter}['sklearn_preprocess']: expected a transformer instance such as "
            f"{value.__name__}(); received the class {value.__name__}."
        )
    if not (callable(getattr(value, "fit", None)) and callable(getattr(value, "transform", None))):
        raise ValidationError.expected(
            f"{parameter}['sklearn_preprocess']",
            "a scikit-learn transformer (an object with fit and transform, e.g. StandardScaler())",
            value,
        )
    return value


def _string_list(value: Any, parameter: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise ValidationError.expected(parameter, "a non-empty list of strings", value)
    return list(value)


def _check_entry(entry: Any, parameter: str, allowed: set[str], expected: str) -> Any:
    """One encoder dict: known keys only, a transformer under 'sklearn_preprocess'."""
    if not isinstance(entry, dict):
        raise ValidationError.expected(parameter, f"dict(sklearn_preprocess=...) with {expected}", entry)
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ValidationError(f"{parameter}: expected {expected}; received unknown keys {unknown!r}.")
    if "sklearn_preprocess" not in entry:
        raise ValidationError.expected(parameter, "a 'sklearn_preprocess' key", entry)
    return _check_transformer(entry["sklearn_preprocess"], parameter)


def parse_label_encoder(value: Any) -> EncoderSpec | None:
    """The checked spec of a ``label_encoder`` argument, or None when there is none."""
    if value is None:
        return None
    parameter = "label_encoder"
    transformer = _check_entry(value, parameter, {"sklearn_preprocess"},
                               "only the key 'sklearn_preprocess' (the label is one column)")
    return EncoderSpec(transformer, parameter)


def parse_feature_encoders(value: Any) -> list[EncoderSpec]:
    """The checked specs of a ``feature_encoders`` argument (one dict or a list of them; None: none)."""
    if value is None:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ValidationError.expected(
            "feature_encoders", "None or a list of dict(sklearn_preprocess=..., dtypes=[...] or columns=[...])", value
        )
    specs = []
    for position, entry in enumerate(value):
        parameter = f"feature_encoders[{position}]"
        transformer = _check_entry(entry, parameter, {"sklearn_preprocess", "dtypes", "columns"},
                                   "keys 'sklearn_preprocess' and one of 'dtypes'/'columns'")
        has_dtypes, has_columns = entry.get("dtypes") is not None, entry.get("columns") is not None
        if has_dtypes == has_columns:
            raise ValidationError(
                f"{parameter}: expected exactly one of 'dtypes' or 'columns'; received "
                f"{'both' if has_dtypes else 'neither'}."
            )
        spec = EncoderSpec(transformer, parameter)
        if has_dtypes:
            spec.dtypes = _string_list(entry["dtypes"], f"{parameter}['dtypes']")
            for name in spec.dtypes:
                _check_dtype_name(name, f"{parameter}['dtypes']")
        else:
            spec.columns = _string_list(entry["columns"], f"{parameter}['columns']")
        specs.append(spec)
    return specs


def _check_dtype_name(name: str, parameter: str) -> None:
    if name in STRING_DTYPES or name in ABSTRACT_DTYPES:
        return
    try:
        pd.api.types.pandas_dtype(name)
    except TypeError as error:
        raise ValidationError.expected(parameter, "pandas dtype names such as 'float64', 'int64', 'object'", name) from error


def _dtype_matches(dtype: Any, name: str) -> bool:
    if name in STRING_DTYPES:
        return pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype)
    if name in ABSTRACT_DTYPES:
        return bool(ABSTRACT_DTYPES[name](dtype))
    return dtype == pd.api.types.pandas_dtype(name)


def resolve_feature_columns(specs: Sequence[EncoderSpec], dtypes: pd.Series,
                            frame: pd.DataFrame | None = None) -> list[str]:
    """Assign columns to encoders, in order; return the unclaimed (pass-through) columns.

    An encoder selecting by dtype takes the matching columns not already claimed by an
    earlier encoder; explicit ``columns`` may not overlap. Every encoder must claim a
    column, and every column that is neither numeric nor bool must be claimed (bool columns
    pass through as 0/1). Date and time columns are never left to pass through: they must
    become numbers first. With ``frame`` (the feature columns' values), text columns that
    hold date objects are told apart in the message.
    """
    owner: dict[str, str] = {}
    for spec in specs:
        if spec.columns is not None:
            unknown = [c for c in spec.columns if c not in dtypes.index]
            if unknown:
                raise ValidationError(
                    f"{spec.parameter}['columns']: expected feature columns; received {unknown!r}, "
                    f"which are not features (features: {list(dtypes.index)[:20]!r})."
                )
            taken = [c for c in spec.columns if c in owner]
            if taken:
                raise ValidationError(
                    f"{spec.parameter}['columns']: expected columns not already encoded; received "
                    f"{taken!r}, already claimed by {owner[taken[0]]}."
                )
            spec.claimed = [c for c in dtypes.index if c in set(spec.columns)]
        else:
            spec.claimed = [
                c for c, d in dtypes.items() if c not in owner and any(_dtype_matches(d, n) for n in spec.dtypes)
            ]
            if not spec.claimed:
                present = sorted({str(d) for d in dtypes})
                raise ValidationError(
                    f"{spec.parameter}['dtypes']: expected dtypes of unencoded feature columns "
                    f"(present: {present!r}); received {spec.dtypes!r}, which claims no column."
                )
        for column in spec.claimed:
            owner[column] = spec.parameter
    passthrough = [c for c in dtypes.index if c not in owner]
    dates = [c for c in passthrough if is_datetime(dtypes[c])
             or (frame is not None and not is_numeric(dtypes[c]) and date_kind(frame[c]) == "objects")]
    if dates:
        kinds = sorted({str(dtypes[c]) for c in dates})
        first = dates[0]
        raise ValidationError(
            f"feature_encoders: expected numeric features; received date/time columns {dates[:10]!r} "
            f"(dtypes {kinds!r}) that no encoder claims. Dates are not categories (one-hot encoding them "
            f"cannot carry over to new dates): derive numbers from them first, e.g. "
            f"df['{first}_dayofweek'] = df['{first}'].dt.dayofweek or "
            f"df['{first}_days'] = (df['{first}'] - df['{first}'].min()).dt.days, "
            f"and exclude {dates[:10]!r} with feature_cols_excluded."
        )
    unencoded = [c for c in passthrough if not passes_through(dtypes[c])]
    if unencoded:
        kinds = sorted({str(dtypes[c]) for c in unencoded})
        raise ValidationError(
            f"feature_encoders: expected an encoder for every non-numeric feature; received none for "
            f"{unencoded[:10]!r} (dtypes {kinds!r}). Add e.g. dict(sklearn_preprocess=OneHotEncoder(), "
            f"columns={unencoded[:3]!r}) or exclude them with feature_cols_excluded."
        )
    return passthrough


def passes_through(dtype: Any) -> bool:
    """Whether a column of this dtype may go to the model unencoded: numbers, and bools as 0/1."""
    return is_numeric(dtype) or pd.api.types.is_bool_dtype(dtype)


def check_date_columns(specs: Sequence[EncoderSpec], frame: pd.DataFrame) -> None:
    """Dates are never encoded as categories by accident: an encoder that claims, by a dtype
    such as ``object`` or ``category``, a column holding date objects is an error; one holding
    text that reads as dates gets a warning. Naming the column in ``columns=[...]`` is a choice."""
    for spec in specs:
        if spec.dtypes is None:
            continue
        for column in spec.claimed:
            dtype = frame[column].dtype
            if is_datetime(dtype) and any(_dtype_matches(dtype, n) for n in spec.dtypes if not _names_dates(n)):
                kind = "objects"
            elif is_numeric(dtype) or is_datetime(dtype):
                continue
            else:
                kind = date_kind(frame[column])
            if kind == "objects":
                raise ValidationError(
                    f"{spec.parameter}['dtypes']: expected to claim categories, not dates; received "
                    f"{spec.dtypes!r}, which claims {column!r} (dtype {dtype}) holding dates. Derive numbers "
                    f"from it first (e.g. day of week, days since a reference date) or exclude it; to encode "
                    f"it as categories on purpose, name it in columns=[{column!r}]."
                )
            if kind == "text":
                warnings.warn(
                    f"{spec.describe()}: claims {column!r} by dtype {spec.dtypes!r}, but its text reads as dates "
                    f"(e.g. {str(frame[column].dropna().iloc[0])!r}); it is encoded as categories. Read it as "
                    f"dates (parse_dates=[{column!r}]) and derive numbers from it, or exclude it.",
                    DataWarning, stacklevel=2,
                )


def _names_dates(name: str) -> bool:
    """A dtype name that selects date/time columns on purpose (e.g. 'datetime64[ns]')."""
    return name not in STRING_DTYPES and name not in ABSTRACT_DTYPES and is_datetime(pd.api.types.pandas_dtype(name))


def fit(spec: EncoderSpec, frame: pd.DataFrame) -> Any:
    """Fit a fresh clone of the spec's transformer on ``frame`` (training rows only)."""
    from sklearn.base import clone

    try:
        transformer = clone(spec.transformer)
    except TypeError:  # not a scikit-learn estimator: copy it instead
        import copy

        transformer = copy.deepcopy(spec.transformer)
    try:
        transformer.fit(frame)
    except (ValueError, TypeError) as error:
        raise ValidationError(
            f"{spec.describe()}: expected a transformer that can fit columns {list(frame.columns)[:10]!r}; "
            f"fitting on the training rows failed: {error}"
        ) from error
    return transformer


def transform(transformer: Any, frame: pd.DataFrame) -> np.ndarray:
    """Apply a fitted transformer; always a dense 2-D array."""
    out = transformer.transform(frame)
    if hasattr(out, "toarray"):
        out = out.toarray()
    out = np.asarray(out)
    if out.ndim == 1:
        out = out.reshape(-1, 1)
    return out


#: rows transformed at a time when checking a fit: bounds the memory of the check
CHUNK_ROWS = 131_072


def transform_chunks(transformer: Any, frame: pd.DataFrame, rows: np.ndarray,
                     chunk_rows: int = CHUNK_ROWS) -> Iterator[np.ndarray]:
    """The transformed ``rows`` of ``frame``, ``chunk_rows`` at a time (transforms are row-wise)."""
    for start in range(0, len(rows), chunk_rows):
        yield transform(transformer, frame.iloc[rows[start : start + chunk_rows]])


def numeric_output(out: np.ndarray, what: str) -> np.ndarray:
    """A transformer's output as numbers; text or objects that are not numbers are an error."""
    if out.dtype.kind in "biuf":
        return out
    try:
        return out.astype(np.float64)
    except (ValueError, TypeError) as error:
        raise ValidationError(
            f"{what}: expected a transformer whose output is numeric; received output of dtype {out.dtype} "
            f"(e.g. {_show(out.ravel()[:3].tolist())}). Encode text columns, e.g. with OneHotEncoder()."
        ) from error


def nonfinite_counts(out: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Per output column, how many values are NaN and how many are +-inf; None when all are finite."""
    if out.dtype.kind not in "fc":
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        if np.isfinite(np.sum(out)):  # one pass, no copy, in the usual case
            return None
    nan = np.isnan(out).sum(axis=0)
    inf = np.isinf(out).sum(axis=0)
    return (nan, inf) if nan.any() or inf.any() else None


def passthrough_values(frame: pd.DataFrame) -> np.ndarray:
    """Pass-through feature columns as one numeric array: numbers as they are, bools as 0/1,
    missing values (None, NaN, pd.NA) as NaN."""
    if all(isinstance(d, np.dtype) and d.kind in "iuf" for d in frame.dtypes):
        return frame.to_numpy()
    return frame.to_numpy(dtype=np.float64, na_value=np.nan)


def encode_features(frame: pd.DataFrame, encoders: Sequence[Any], feature_columns: Sequence[str]) -> pd.DataFrame:
    """Raw feature rows through fitted feature encoders: each encoder's block in order, then the
    columns of ``feature_columns`` no encoder claims (passed through, see :func:`passthrough_values`).
    An encoder is anything with ``columns``, ``fitted`` and ``output_columns`` (a stored
    :class:`aiqc.orm.Encoder`, or an exported predictor's). Index as ``frame``'s."""
    claimed = {c for e in encoders for c in e.columns}
    blocks, names = [], []
    for encoder in encoders:
        blocks.append(transform(encoder.fitted, frame[encoder.columns]))
        names += encoder.output_columns
    passthrough = [c for c in feature_columns if c not in claimed]
    if passthrough:
        blocks.append(passthrough_values(frame[passthrough]))
        names += passthrough
    values = blocks[0] if len(blocks) == 1 else np.hstack([b.astype(np.float64, copy=False) for b in blocks])
    return pd.DataFrame(values, columns=names, index=frame.index)


def output_names(transformer: Any, columns: list[str], width: int) -> list[str]:
    """Names of a fitted transformer's ``width`` output columns: its own feature names when it
    has them, else the input columns, else numbered names derived from them."""
    try:
        names = [str(n) for n in transformer.get_feature_names_out(columns)]
        if len(names) == width:
            return names
    except (AttributeError, ValueError, TypeError):
        pass
    if width == len(columns):
        return list(columns)
    return [f"{'_'.join(columns)[:40]}_{i}" for i in range(width)]


def describe_params(transformer: Any) -> dict[str, str]:
    """A transformer's own parameters (``get_params(deep=False)``), non-scalar values shown as text."""
    try:
        params = transformer.get_params(deep=False)
    except (AttributeError, TypeError):
        return {}
    return {k: _show(v) if not isinstance(v, (str, int, float, bool, type(None))) else v for k, v in params.items()}


# --- categories: too many of them at fit, unknown ones at predict ------------------------------------
def _is_category_encoder(transformer: Any) -> bool:
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    return isinstance(transformer, (OneHotEncoder, OrdinalEncoder))


def _holds_category_encoder(transformer: Any) -> bool:
    if _is_category_encoder(transformer):
        return True
    steps = getattr(transformer, "steps", None)
    if isinstance(steps, list):
        return any(_holds_category_encoder(step) for _, step in steps)
    parts = getattr(transformer, "transformers_", None)
    if isinstance(parts, list):
        return any(_holds_category_encoder(part[1]) for part in parts)
    return False


def category_encoders(transformer: Any, names: list[str], frame: Any = None) -> Iterator[tuple[Any, list[str], Any]]:
    """``(encoder, input column names, input rows)`` of every fitted OneHotEncoder / OrdinalEncoder
    in ``transformer`` (itself, a Pipeline's steps, a ColumnTransformer's parts). ``names`` are
    the transformer's input columns; with ``frame`` (its input rows), each encoder's input rows
    are computed too (through the Pipeline steps before it), else they are None."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if _is_category_encoder(transformer):
        own = getattr(transformer, "feature_names_in_", None)
        yield transformer, ([str(n) for n in own] if own is not None and len(own) == len(transformer.categories_)
                            else list(names)), frame
    elif isinstance(transformer, Pipeline):
        for index, (_, step) in enumerate(transformer.steps):
            if isinstance(step, str) or step is None or not _holds_category_encoder(step):
                continue
            if index == 0:
                yield from category_encoders(step, names, frame)
                continue
            prefix = transformer[:index]
            try:
                step_names = [str(n) for n in prefix.get_feature_names_out(names)]
            except (AttributeError, ValueError, TypeError):
                step_names = [f"x{i}" for i in range(len(getattr(step, "categories_", [])))]
            yield from category_encoders(step, step_names, None if frame is None else prefix.transform(frame))
    elif isinstance(transformer, ColumnTransformer):
        indices = getattr(transformer, "_transformer_to_input_indices", {})
        for name, part, _ in transformer.transformers_:
            if isinstance(part, str) or name not in indices or not _holds_category_encoder(part):
                continue
            positions = list(indices[name])
            part_frame = None
            if frame is not None:
                part_frame = frame.iloc[:, positions] if isinstance(frame, pd.DataFrame) else np.asarray(frame)[:, positions]
            yield from category_encoders(part, [names[i] for i in positions], part_frame)


#: a OneHotEncoder fit on more distinct values than this (or on mostly unique ones) warns
MANY_CATEGORIES = 100


def warn_many_categories(spec: EncoderSpec, fitted: Any, row_count: int) -> list[tuple[str, int]]:
    """Warn (``DataWarning``) for each column a OneHotEncoder in ``fitted`` learned very many
    categories of: more than :data:`MANY_CATEGORIES`, or more than half of the ``row_count``
    rows it was fit on (an ID or free text: one output column per value, which does not
    generalise). Encoders that cap their categories (``max_categories``, ``min_frequency``)
    are left alone. Returns ``(column, count)`` of each warning."""
    from sklearn.preprocessing import OneHotEncoder

    found = []
    for encoder, names, _ in category_encoders(fitted, spec.claimed):
        if not isinstance(encoder, OneHotEncoder):
            continue
        if getattr(encoder, "max_categories", None) is not None or getattr(encoder, "min_frequency", None) is not None:
            continue
        for name, categories in zip(names, encoder.categories_):
            count = len(categories)
            if count > MANY_CATEGORIES or (count > 10 and count > row_count / 2):
                found.append((name, count))
    if found:
        listed = ", ".join(f"{name!r} ({count} distinct values in {row_count} training rows)" for name, count in found)
        warnings.warn(
            f"{spec.describe()}: one-hot encodes columns with very many categories: {listed}; each value "
            "becomes its own column, which does not generalise (an ID, free text or dates?). Exclude them, "
            "derive numbers from them, or cap the categories, e.g. OneHotEncoder(max_categories=20, "
            "handle_unknown='infrequent_if_exist').",
            DataWarning, stacklevel=2,
        )
    return found


def warn_one_hot_dates(spec: EncoderSpec, fitted: Any, frame: pd.DataFrame) -> list[str]:
    """Warn (``DataWarning``) when a OneHotEncoder in ``fitted`` encodes a date column of ``frame``
    (a datetime dtype, or date objects), even one named in ``columns=[...]``: each date becomes
    a category that new dates never match. Returns the columns warned about."""
    from sklearn.preprocessing import OneHotEncoder

    dates = []
    for encoder, names, _ in category_encoders(fitted, spec.claimed):
        if isinstance(encoder, OneHotEncoder):
            dates += [n for n in names if n in frame.columns and n not in dates
                      and (is_datetime(frame[n].dtype) or date_kind(frame[n]) == "objects")]
    if dates:
        warnings.warn(
            f"{spec.describe()}: one-hot encodes the date columns {dates!r}; each date becomes a category that "
            "new dates never match. Derive numbers from them instead (e.g. day of week, days since a reference "
            "date), or exclude them.",
            DataWarning, stacklevel=2,
        )
    return dates


@dataclass
class UnknownCategories:
    """Values of one input column that a fitted category encoder never saw."""

    column: str
    values: list
    rows: np.ndarray  # positions of the rows holding them
    encoder: str  # e.g. "OneHotEncoder(handle_unknown='ignore')"
    refused: bool  # the encoder raises on them (handle_unknown='error')


def unknown_categories(transformer: Any, names: list[str], frame: pd.DataFrame) -> list[UnknownCategories]:
    """For each OneHotEncoder / OrdinalEncoder in a fitted ``transformer`` whose input columns are
    ``names`` (the columns of ``frame``), the values of ``frame`` it never saw in training."""
    found = []
    for encoder, columns, rows in category_encoders(transformer, names, frame):
        if rows is None:
            continue
        handle = getattr(encoder, "handle_unknown", "error")
        described = f"{type(encoder).__name__}(handle_unknown={handle!r})"
        for position, (name, categories) in enumerate(zip(columns, encoder.categories_)):
            values = pd.Series(rows.iloc[:, position] if isinstance(rows, pd.DataFrame) else np.asarray(rows)[:, position])
            unseen = ~values.isin(categories).to_numpy()
            if unseen.any():
                distinct = pd.unique(values[unseen].astype(object))
                found.append(UnknownCategories(str(name), [v.item() if hasattr(v, "item") else v for v in distinct[:10]],
                                               np.flatnonzero(unseen), described, handle == "error"))
    return found
