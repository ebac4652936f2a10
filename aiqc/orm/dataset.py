"""Dataset: the raw table itself, stored as parquet parts, with its schema and hash."""

from __future__ import annotations

import hashlib
import logging
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import peewee as pw

from aiqc import caches
from aiqc.orm.base import BaseModel, JSONField, database_key, database_proxy, ensure_database, query_on_class

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from aiqc.data.plan import DatasetPlan
    from aiqc.deletion import Deleted
    from aiqc.orm.feature import Feature
    from aiqc.orm.label import Label


logger = logging.getLogger(__name__)


class _Tabular:
    """``Dataset.Tabular``: constructors for tabular data (DataFrame or file)."""

    @staticmethod
    def from_pandas(dataframe: "pd.DataFrame", name: str | None = None, description: str | None = None) -> "Dataset":
        """Store a DataFrame (its index is not kept; rows are numbered 0..n-1)."""
        from aiqc.data.plan import plan_dataset

        plan = plan_dataset(dataframe, name, description, parameter="dataframe")
        with ensure_database().atomic():
            return Dataset._from_plan(plan)

    @staticmethod
    def from_path(file_path: str, name: str | None = None, description: str | None = None,
                  parse_dates: list[str] | None = None) -> "Dataset":
        """Store a .csv, .tsv or .parquet file (delimiter from the extension); ``parse_dates``
        names columns to read as dates."""
        from aiqc.data.plan import plan_dataset

        plan = plan_dataset(file_path, name, description, parameter="file_path", parse_dates=parse_dates)
        with ensure_database().atomic():
            return Dataset._from_plan(plan)


class Dataset(BaseModel):
    """A stored table. ``sha256`` is the hash of the stored parquet parts, in order."""

    name = pw.TextField(null=True)
    description = pw.TextField(null=True)
    source = pw.TextField()  # file path, or "pandas.DataFrame"
    file_format = pw.TextField(default="parquet")
    row_count = pw.IntegerField()
    column_count = pw.IntegerField()
    columns = JSONField()
    dtypes = JSONField()  # {column: pandas dtype name}
    sha256 = pw.CharField(max_length=64, index=True)
    stored_bytes = pw.BigIntegerField()
    # array datasets (images, sequences): the samples are stored as raw parts (DatasetArray), the
    # table above holds one row per sample (its label, file name or sequence id); null for tables
    modality = pw.TextField(null=True)  # "image" | "sequence"; null: a table
    sample_shape = JSONField(null=True)  # one sample: [H, W, C] or [timesteps, features]
    sample_dtype = pw.TextField(null=True)  # e.g. "uint8"
    channels = JSONField(null=True)  # names of the last axis: ["red", "green", "blue"], the features of a sequence
    settings = JSONField(null=True)  # how the arrays were made: {"resize": [h, w]}, {"padding": ...}

    Tabular = _Tabular

    @property
    def is_array(self) -> bool:
        """Whether its samples are arrays (images, sequences) rather than rows of the table."""
        return self.modality is not None

    def to_array(self, rows: Any = None) -> "np.ndarray":
        """The samples of an image or sequence dataset (all, or those at positions ``rows``),
        shaped (N, H, W, C) or (N, timesteps, features), in their stored dtype."""
        if not self.is_array:
            from aiqc.exceptions import ValidationError

            raise ValidationError(f"dataset: expected an image or sequence dataset for to_array(); dataset {self.id} "
                                  "is a table (use to_pandas or to_numpy).")
        array = _read_array(self.id, self.sha256, database_key(), self.sample_dtype, tuple(self.sample_shape))
        return array if rows is None else array[rows]

    @classmethod
    def _from_array_plan(cls, plan: Any) -> "Dataset":
        """Store an :class:`~aiqc.data.arrays.ArrayDatasetPlan`: the table of one row per sample as
        parquet parts, the samples as raw C-order parts in ``sample_dtype`` (read back with
        ``sample_shape``); ``sha256`` covers both, in order. An existing
        dataset with the same content, modality and sample shape is reused, as for tables."""
        from aiqc.data.arrays import iter_array_parts

        existing = cls._same_content(plan)
        if existing is not None:
            _notice_reuse(existing, plan)
            return existing
        dataset, digest, total = cls._write_table(plan)
        with ensure_database().bulk_writes():
            for index, (start, count, view) in enumerate(iter_array_parts(plan.array)):
                digest.update(view)
                total += len(view)
                DatasetArray.insert(dataset=dataset, part_index=index, row_start=start, row_count=count,
                                    blob=view).execute()
                del view
        dataset.sha256, dataset.stored_bytes = digest.hexdigest(), total
        dataset.save(only=[Dataset.sha256, Dataset.stored_bytes])
        return dataset

    @classmethod
    def _from_plan(cls, plan: "DatasetPlan") -> "Dataset":
        """The stored dataset of ``plan``: an existing one with the same content (the sha256 of
        its parquet parts) and schema (columns and dtypes), reused with a
        :class:`~aiqc.exceptions.DataReusedNotice`, else a new one."""
        existing = cls._same_content(plan)
        if existing is not None:
            _notice_reuse(existing, plan)
            return existing
        dataset, digest, total = cls._write_table(plan)
        dataset.sha256, dataset.stored_bytes = digest.hexdigest(), total
        dataset.save(only=[Dataset.sha256, Dataset.stored_bytes])
        return dataset

    @classmethod
    def _same_content(cls, plan: "DatasetPlan") -> "Dataset | None":
        """A stored dataset with the rows, columns, dtypes and parquet bytes of ``plan``, or None.
        Only when one has the same shape and schema are the parts serialised to be hashed
        (not stored): storing new data costs one query more."""
        df = plan.df
        array = getattr(plan, "array", None)
        candidates = [d for d in cls.select().where((cls.row_count == len(df)) & (cls.column_count == df.shape[1]))
                      .order_by(cls.id)
                      if d.columns == [str(c) for c in df.columns] and d.dtypes == plan.dtypes and d.sha256
                      and d.modality == getattr(plan, "modality", None)
                      and (d.settings or {}) == _as_stored(getattr(plan, "settings", None) or {})
                      and (array is None or (d.sample_shape == plan.sample_shape
                                             and d.sample_dtype == str(array.dtype.newbyteorder("="))))]
        if not candidates:
            return None
        from aiqc.data.frames import iter_parquet_parts

        digest = hashlib.sha256()
        for _, _, blob in iter_parquet_parts(df):
            digest.update(memoryview(blob))
        if array is not None:
            from aiqc.data.arrays import iter_array_parts

            for _, _, view in iter_array_parts(array):
                digest.update(view)
        sha256 = digest.hexdigest()
        return next((d for d in candidates if d.sha256 == sha256), None)

    @classmethod
    def _write_table(cls, plan: Any) -> tuple["Dataset", Any, int]:
        """The dataset row and its table's parquet parts; returns (dataset, the running sha256, bytes stored)."""
        from aiqc.data.arrays import stored_dtype
        from aiqc.data.frames import iter_parquet_parts

        df = plan.df
        array = getattr(plan, "array", None)
        dataset = cls.create(
            name=plan.name, description=plan.description, source=plan.source,
            row_count=len(df), column_count=df.shape[1], columns=list(df.columns),
            dtypes=plan.dtypes, sha256="", stored_bytes=0,
            **({} if array is None else dict(modality=plan.modality, sample_shape=plan.sample_shape,
                                             sample_dtype=str(stored_dtype(array)), channels=list(plan.channels),
                                             settings=plan.settings or None)),
        )
        digest, total = hashlib.sha256(), 0
        for index, (start, count, blob) in enumerate(iter_parquet_parts(df)):
            view = memoryview(blob)
            digest.update(view)
            total += len(view)
            DatasetPart.insert(dataset=dataset, part_index=index, row_start=start, row_count=count, blob=view).execute()
            del view, blob
        return dataset, digest, total

    # --- reading -----------------------------------------------------------------
    def to_pandas(self, columns: list[str] | None = None, rows: Any = None) -> "pd.DataFrame":
        """The stored table (or some columns / rows of it), with its original dtypes."""
        frame = _read_frame(self.id, self.sha256, database_key())
        if columns is not None:
            from aiqc.exceptions import ValidationError

            unknown = [c for c in columns if c not in frame.columns]
            if unknown:
                raise ValidationError(f"columns: expected columns of dataset {self.id}; received unknown {unknown!r}.")
            frame = frame[list(columns)]
        if rows is not None:
            frame = frame.iloc[rows]
        return frame.copy()

    def to_numpy(self, columns: list[str] | None = None, rows: Any = None) -> "np.ndarray":
        """The stored table (or some columns / rows of it) as a numpy array."""
        return self.to_pandas(columns, rows).to_numpy()

    # --- next steps (low-level API) ---------------------------------------------
    def make_label(self, column: str) -> "Label":
        """Choose the label column; returns a stored :class:`Label`."""
        from aiqc.data.plan import plan_label
        from aiqc.orm.label import Label

        plan = plan_label(self.to_pandas(), column, parameter="column")
        with database_proxy.atomic():
            return Label._from_plan(self, plan)

    def make_feature(self, exclude_columns: Any = None, label: "Label | None" = None) -> "Feature":
        """Choose the feature columns: every column except ``exclude_columns``."""
        from aiqc.data.plan import plan_feature
        from aiqc.orm.feature import Feature

        plan = plan_feature(self.to_pandas().head(0), exclude_columns, label.column if label else None,
                            parameter="exclude_columns")
        with database_proxy.atomic():
            return Feature._from_plan(self, plan)

    @query_on_class
    def delete(self) -> Deleted:
        """Delete this dataset with its splitsets (their folds and encoders), labels, features
        and stored parts. Refused (:class:`aiqc.exceptions.InUseError`, naming them) while
        queues use one of its splitsets. Returns what went (:class:`aiqc.deletion.Deleted`).
        ``Dataset.delete()`` on the class is peewee's DELETE query."""
        from aiqc.deletion import delete

        return delete("dataset", self.id)


class DatasetPart(BaseModel):
    """A consecutive range of rows of a dataset, as one parquet file."""

    dataset = pw.ForeignKeyField(Dataset, backref="parts", on_delete="CASCADE")
    part_index = pw.IntegerField()
    row_start = pw.BigIntegerField()
    row_count = pw.IntegerField()
    blob = pw.BlobField()

    class Meta:
        indexes = ((("dataset", "part_index"), True),)


class DatasetArray(BaseModel):
    """A consecutive range of the samples of an image or sequence dataset: their raw bytes, C order,
    in the dataset's ``sample_dtype`` (``numpy.frombuffer(blob, sample_dtype).reshape(-1, *sample_shape)``)."""

    dataset = pw.ForeignKeyField(Dataset, backref="array_parts", on_delete="CASCADE")
    part_index = pw.IntegerField()
    row_start = pw.BigIntegerField()
    row_count = pw.IntegerField()
    blob = pw.BlobField()

    class Meta:
        indexes = ((("dataset", "part_index"), True),)


def _as_stored(value: Any) -> Any:
    """``value`` as it reads back from a JSON column (tuples become lists, keys strings)."""
    import json

    return json.loads(json.dumps(value))


def _notice_reuse(existing: Dataset, plan: Any) -> None:
    """Tell the user (:class:`~aiqc.exceptions.DataReusedNotice`) that ``plan`` is stored already."""
    import warnings

    from aiqc.exceptions import DataReusedNotice

    logger.info("dataset %s reused: same content and schema as %s", existing.id, plan.source)
    shape = (f"{existing.row_count} {existing.modality}s of shape {tuple(existing.sample_shape)}" if existing.is_array
             else f"{existing.row_count} rows x {existing.column_count} columns")
    warnings.warn(f"dataset: the data given ({plan.source}, {shape}) is already stored as dataset {existing.id}"
                  f"{f' ({existing.name!r})' if existing.name else ''} with the same content (sha256 "
                  f"{existing.sha256[:12]}...) and schema; reusing it instead of storing another copy.",
                  DataReusedNotice, stacklevel=4)


@caches.register
@lru_cache(maxsize=2)
def _read_array(dataset_id: int, sha256: str, database: str, dtype: str, sample_shape: tuple) -> "np.ndarray":
    """The samples of an array dataset, read once per process (keyed on its content, as :func:`_read_frame`)."""
    from aiqc.data.arrays import parts_to_array

    query = (DatasetArray.select(DatasetArray.blob)
             .where(DatasetArray.dataset == dataset_id).order_by(DatasetArray.part_index))
    array = parts_to_array([row.blob for row in query], dtype, sample_shape)
    array.flags.writeable = False  # shared by every caller: a change would leak into the next read
    return array


@caches.register
@lru_cache(maxsize=2)
def _read_frame(dataset_id: int, sha256: str, database: str) -> "pd.DataFrame":
    """Datasets never change once written, so reads are cached per process; the key holds the
    content's ``sha256``, so a dataset deleted in another process, whose id SQLite gives to a new
    one, is never read from the cache."""
    from aiqc.data.frames import parts_to_frame

    query = (DatasetPart.select(DatasetPart.blob)
             .where(DatasetPart.dataset == dataset_id).order_by(DatasetPart.part_index))
    blobs = [bytes(row.blob) for row in query]
    return parts_to_frame(blobs)
