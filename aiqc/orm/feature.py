"""Feature: which columns the model sees."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import peewee as pw

from aiqc.orm.base import BaseModel, JSONField
from aiqc.orm.dataset import Dataset

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from aiqc.data.plan import FeaturePlan


class Feature(BaseModel):
    """The feature columns of a dataset: the columns the model sees, and those excluded."""

    dataset = pw.ForeignKeyField(Dataset, backref="features", on_delete="CASCADE")
    columns = JSONField()
    columns_excluded = JSONField()

    @classmethod
    def _from_plan(cls, dataset: Dataset, plan: "FeaturePlan") -> "Feature":
        return cls.create(dataset=dataset, columns=plan.columns, columns_excluded=plan.excluded)

    def to_pandas(self, rows: Any = None) -> "pd.DataFrame":
        """The feature columns of the dataset (or some rows of them) as a DataFrame."""
        return self.dataset.to_pandas(self.columns, rows)

    def to_numpy(self, rows: Any = None) -> "np.ndarray":
        """The feature columns of the dataset (or some rows of them) as a numpy array."""
        return self.to_pandas(rows).to_numpy()
