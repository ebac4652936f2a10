"""Label: which column is predicted, and its classes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import peewee as pw

from aiqc.orm.base import BaseModel, JSONField
from aiqc.orm.dataset import Dataset

if TYPE_CHECKING:
    import pandas as pd

    from aiqc.data.plan import LabelPlan


class Label(BaseModel):
    dataset = pw.ForeignKeyField(Dataset, backref="labels", on_delete="CASCADE")
    column = pw.CharField()
    dtype = pw.CharField()
    categorical = pw.BooleanField()  # text/bool/integer labels are split by class
    classes = JSONField(null=True)  # sorted class values; null for a continuous label
    unique_count = pw.IntegerField()

    @classmethod
    def _from_plan(cls, dataset: Dataset, plan: "LabelPlan") -> "Label":
        return cls.create(dataset=dataset, column=plan.column, dtype=plan.dtype, categorical=plan.categorical,
                          classes=plan.classes, unique_count=plan.unique_count)

    def to_pandas(self, rows=None) -> "pd.DataFrame":
        return self.dataset.to_pandas([self.column], rows)

    def to_numpy(self, rows=None):
        return self.to_pandas(rows).to_numpy()
