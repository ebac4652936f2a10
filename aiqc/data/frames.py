"""Reading tabular files and checking DataFrames; parquet (de)serialisation of parts."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from aiqc.exceptions import ValidationError

#: file extension -> reader keyword arguments
READERS = {".csv": dict(sep=","), ".tsv": dict(sep="\t"), ".parquet": None}
#: target size of one stored parquet part; bounds the memory a write needs
PART_BYTES = 32 * 1024 * 1024


def read_path(path: str | os.PathLike, parameter: str = "df_or_path",
              parse_dates: list[str] | None = None) -> pd.DataFrame:
    """Read a .csv, .tsv or .parquet file (delimiter from the extension); the columns named in
    ``parse_dates`` are converted to datetimes (see :func:`parse_date_columns`)."""
    parse_dates = check_parse_dates(parse_dates)
    path = Path(os.fspath(path)).expanduser()
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise ValidationError.expected(
            parameter, "a DataFrame or a path ending in .csv, .tsv or .parquet", str(path)
        )
    if not path.is_file():
        raise ValidationError(f"{parameter}: expected an existing file; received {str(path)!r} (no such file).")
    try:
        if suffix == ".parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, **READERS[suffix])
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise ValidationError(
            f"{parameter}: expected a readable {suffix[1:]} file; received {str(path)!r}, "
            f"which failed to parse: {error}"
        ) from error
    return parse_date_columns(df, parse_dates)


def check_parse_dates(parse_dates: object) -> list[str]:
    """The checked ``parse_dates`` argument: None (no column) or column name(s), as a list."""
    if parse_dates is None:
        return []
    if isinstance(parse_dates, str):
        parse_dates = [parse_dates]
    if not isinstance(parse_dates, (list, tuple)) or not all(isinstance(c, str) for c in parse_dates):
        raise ValidationError.expected("parse_dates", "None, a column name or a list of column names", parse_dates)
    return list(parse_dates)


def parse_date_columns(df: pd.DataFrame, parse_dates: list[str]) -> pd.DataFrame:
    """``df`` with the ``parse_dates`` columns converted to datetimes (a new frame; ``df`` is
    not changed). A value that is not a date is an error, never a silent text column."""
    if not parse_dates:
        return df
    unknown = [c for c in parse_dates if c not in df.columns]
    if unknown:
        raise ValidationError(
            f"parse_dates: expected columns of the data {list(df.columns)[:20]!r}; received unknown {unknown!r}."
        )
    converted = {}
    for column in parse_dates:
        series = df[column]
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                converted[column] = pd.to_datetime(series)
        except (ValueError, TypeError, OverflowError) as error:
            raise ValidationError(
                f"parse_dates: expected columns of dates; received {column!r}, which holds a value that is "
                f"not a date: {error}"
            ) from error
        for warning in caught:  # pandas' notes on how it parsed (told only when it succeeded)
            warnings.warn(f"parse_dates: column {column!r}: {warning.message}", warning.category, stacklevel=3)
    return df.assign(**converted) if converted else df


def check_frame(df: object, parameter: str = "df_or_path") -> pd.DataFrame:
    """A non-empty DataFrame with unique string column names."""
    if not isinstance(df, pd.DataFrame):
        raise ValidationError.expected(parameter, "a pandas DataFrame or a file path", df)
    if df.shape[0] == 0 or df.shape[1] == 0:
        raise ValidationError(
            f"{parameter}: expected a DataFrame with at least one row and one column; "
            f"received one of shape {df.shape}."
        )
    not_text = [c for c in df.columns if not isinstance(c, str)]
    if not_text:
        raise ValidationError(
            f"{parameter}: expected string column names; received {not_text[:5]!r}. "
            "Rename them, e.g. df.columns = df.columns.astype(str)."
        )
    duplicated = sorted(set(df.columns[df.columns.duplicated()]))
    if duplicated:
        raise ValidationError(f"{parameter}: expected unique column names; received duplicates {duplicated!r}.")
    return df


def dtype_names(df: pd.DataFrame) -> dict[str, str]:
    """Column name -> dtype name (e.g. ``'float64'``) of every column of ``df``."""
    return {column: str(dtype) for column, dtype in df.dtypes.items()}


def iter_parquet_parts(df: pd.DataFrame) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(row_start, row_count, parquet_bytes)`` for consecutive row ranges.

    Writing part by part keeps the extra memory of a write to about one part, whatever
    the size of the DataFrame.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    row_bytes = max(1, int(df.memory_usage(index=False, deep=False).sum() // max(len(df), 1)))
    rows_per_part = max(1, PART_BYTES // row_bytes)
    for start in range(0, len(df), rows_per_part):
        chunk = df.iloc[start : start + rows_per_part]
        table = pa.Table.from_pandas(chunk, preserve_index=False)
        sink = pa.BufferOutputStream()
        # Dictionary encoding pays for repeated values (text, categories), not for floats,
        # where trying it first costs ~5x the write time.
        dictionary = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
        pq.write_table(table, sink, compression="lz4", use_dictionary=dictionary)
        del table
        yield start, len(chunk), sink.getvalue()


def parts_to_frame(blobs: list[bytes], columns: list[str] | None = None) -> pd.DataFrame:
    """Concatenate stored parquet parts back into one DataFrame (index 0..n-1)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = [pq.read_table(pa.BufferReader(blob), columns=columns) for blob in blobs]
    table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
    frame = table.to_pandas()
    frame.index = pd.RangeIndex(len(frame))
    return frame


def is_numeric(dtype: object) -> bool:
    """Integer and float dtypes: values that are quantities (bool does not count)."""
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def is_datetime(dtype: object) -> bool:
    """Dates and times: datetime (with or without a time zone), timedelta and period dtypes,
    and categories of them."""
    if isinstance(dtype, pd.CategoricalDtype):
        return is_datetime(dtype.categories.dtype)
    return (pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype)
            or isinstance(dtype, pd.PeriodDtype))


#: what ``pandas.api.types.infer_dtype`` calls columns of date, time and duration objects
DATE_KINDS = {"date", "datetime", "datetime64", "time", "timedelta", "timedelta64", "period"}
#: text that reads as a date: ISO 8601 (2024-03-01, 2024-03-01 12:30:00, ...) or 3/1/2024
_DATE_TEXT = (r"^\s*(\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?"
              r"|\d{1,2}/\d{1,2}/\d{2,4}( \d{1,2}:\d{2}(:\d{2})?)?)\s*$")


def date_kind(series: pd.Series, sample: int = 200) -> str | None:
    """What a text, object or category column holds when it holds dates: ``'objects'`` (date,
    datetime, time, timedelta or period objects), ``'text'`` (strings that read as dates, e.g.
    ``2024-03-01``), else None. Only the first ``sample`` values present are looked at."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        if is_datetime(series.dtype):
            return "objects"
        values = pd.Series(series.cat.categories[:sample])
    elif pd.api.types.is_object_dtype(series.dtype) or pd.api.types.is_string_dtype(series.dtype):
        values = series.iloc[: sample * 5].dropna().iloc[:sample]
    else:
        return None
    if values.empty:
        return None
    kind = pd.api.types.infer_dtype(values, skipna=True)
    if kind in DATE_KINDS:
        return "objects"
    if kind == "string" and bool(values.astype(str).str.match(_DATE_TEXT).all()):
        return "text"
    return None


def is_categorical(dtype: object) -> bool:
    """Text, category, bool and object columns: values that are names, not quantities."""
    return not is_numeric(dtype)


def to_python(values: np.ndarray) -> list:
    """Array of scalars -> JSON-friendly Python list."""
    return [v.item() if hasattr(v, "item") else v for v in values]
