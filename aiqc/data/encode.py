"""Encoder specifications: which scikit-learn transformer applies to which columns,
fitting on training rows, and applying fitted encoders to any rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from aiqc.data.frames import is_numeric
from aiqc.exceptions import ValidationError, _show

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
        """The parameter and transformer class, for messages, e.g. ``feature_encoders[0] (StandardScaler)``."""
        return f"{self.parameter} ({type(self.transformer).__name__})"


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


def resolve_feature_columns(specs: Sequence[EncoderSpec], dtypes: pd.Series) -> list[str]:
    """Assign columns to encoders, in order; return the unclaimed (pass-through) columns.

    An encoder selecting by dtype takes the matching columns not already claimed by an
    earlier encoder; explicit ``columns`` may not overlap. Every encoder must claim a
    column, and every non-numeric column must be claimed.
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
    unencoded = [c for c in passthrough if not is_numeric(dtypes[c])]
    if unencoded:
        kinds = sorted({str(dtypes[c]) for c in unencoded})
        raise ValidationError(
            f"feature_encoders: expected an encoder for every non-numeric feature; received none for "
            f"{unencoded[:10]!r} (dtypes {kinds!r}). Add e.g. dict(sklearn_preprocess=OneHotEncoder(), "
            f"columns={unencoded[:3]!r}) or exclude them with feature_cols_excluded."
        )
    return passthrough


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
