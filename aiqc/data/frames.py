"""Reading tabular files and checking DataFrames; parquet (de)serialisation of parts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from aiqc.exceptions import ValidationError

#: file extension -> reader keyword arguments
READERS = {".csv": dict(sep=","), ".tsv": dict(sep="\t"), ".parquet": None}
#: target size of one stored parquet part; bounds the memory a write needs
PART_BYTES = 32 * 1024 * 1024


def read_path(path: str | os.PathLike, parameter: str = "df_or_path") -> pd.DataFrame:
    """Read a .csv, .tsv or .parquet file (delimiter from the extension)."""
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
            return pd.read_parquet(path)
        return pd.read_csv(path, **READERS[suffix])
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise ValidationError(
            f"{parameter}: expected a readable {suffix[1:]} file; received {str(path)!r}, "
            f"which failed to parse: {error}"
        ) from error


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


def is_categorical(dtype: object) -> bool:
    """Text, category, bool and object columns: values that are names, not quantities."""
    return not is_numeric(dtype)


def to_python(values: np.ndarray) -> list:
    """Array of scalars -> JSON-friendly Python list."""
    return [v.item() if hasattr(v, "item") else v for v in values]
