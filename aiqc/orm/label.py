"""Label: which column is predicted, and its classes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import peewee as pw

from aiqc.orm.base import BaseModel, JSONField
from aiqc.orm.dataset import Dataset

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from aiqc.data.plan import LabelPlan


class Label(BaseModel):
    """The label column of a dataset: the column predicted, its dtype and its classes."""

    dataset = pw.ForeignKeyField(Dataset, backref="labels", on_delete="CASCADE")
    column = pw.TextField()
    dtype = pw.TextField()
    categorical = pw.BooleanField()  # text/bool/integer labels are split by class
    classes = JSONField(null=True)  # sorted class values; null for a continuous label
    unique_count = pw.IntegerField()

    @classmethod
    def _from_plan(cls, dataset: Dataset, plan: "LabelPlan") -> "Label":
        return cls.create(dataset=dataset, column=plan.column, dtype=plan.dtype, categorical=plan.categorical,
                          classes=plan.classes, unique_count=plan.unique_count)

    def to_pandas(self, rows: Any = None) -> "pd.DataFrame":
        """The label column of the dataset (or some rows of it) as a one-column DataFrame."""
        return self.dataset.to_pandas([self.column], rows)

    def to_numpy(self, rows: Any = None) -> "np.ndarray":
        """The label column of the dataset (or some rows of it) as a 2-D numpy array (one column)."""
        return self.to_pandas(rows).to_numpy()
