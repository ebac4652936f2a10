"""Encoder: a scikit-learn transformer fit on one scope's training rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import peewee as pw

from aiqc.orm.base import BaseModel, JSONField, PickleField, StoredPickle, _PickleAccessor
from aiqc.orm.splitset import Fold, Splitset

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from aiqc.data.plan import EncoderPlan


class _VersionCheckedAccessor(_PickleAccessor):
    """Unpickles as :class:`PickleField` does, then warns (:class:`aiqc.exceptions.VersionWarning`)
    when the encoder was fit under another scikit-learn, numpy or Python than the one running."""

    def __get__(self, instance: Any, instance_type: Any = None) -> Any:
        fresh = instance is not None and isinstance(instance.__data__.get(self.name), StoredPickle)
        value = super().__get__(instance, instance_type)
        if fresh:
            warn_versions(instance.versions, f"encoder {instance.id} (splitset {instance.splitset_id})")
        return value


class _VersionCheckedPickleField(PickleField):
    accessor_class = _VersionCheckedAccessor


#: what a pickled transformer's behaviour depends on
ENCODER_DISTRIBUTIONS = ("python", "scikit-learn", "numpy")


def warn_versions(recorded: dict | None, what: str) -> None:
    """A :class:`aiqc.exceptions.VersionWarning` when ``recorded`` versions of
    :data:`ENCODER_DISTRIBUTIONS` differ from the running ones."""
    from aiqc.versions import describe, mismatches

    found = mismatches(recorded, ENCODER_DISTRIBUTIONS)
    if found:
        import warnings

        from aiqc.exceptions import VersionWarning

        warnings.warn(f"{what} was fit under {describe(found)}: a pickled transformer may behave differently, or "
                      "not load, under other versions. Fit the encoders again (a new splitset) to be sure.",
                      VersionWarning, stacklevel=3)


class Encoder(BaseModel):
    """``side`` is 'label' or 'feature'; ``fold`` is null for the encoder fit on the whole
    train split, else the fold whose training rows it was fit on."""

    splitset = pw.ForeignKeyField(Splitset, backref="encoders", on_delete="CASCADE")
    fold = pw.ForeignKeyField(Fold, backref="encoders", null=True, on_delete="CASCADE")
    side = pw.TextField()
    position = pw.IntegerField()  # order among the feature encoders as given
    class_path = pw.TextField()  # e.g. sklearn.preprocessing._data.StandardScaler
    params = JSONField()
    dtypes = JSONField(null=True)  # as requested
    columns_requested = JSONField(null=True)  # as requested
    columns = JSONField()  # resolved columns it applies to
    output_columns = JSONField()
    fitted = _VersionCheckedPickleField()  # cloudpickle; the user's own classes and functions by value
    source = pw.TextField(null=True)  # source text of the user's own classes / functions in it, if any
    # label encoders: the class values in the order of the model's outputs, recorded at fit time so that
    # reading results never unpickles ``fitted``; null for feature encoders and rows written before it existed
    categories = JSONField(null=True)
    versions = JSONField(null=True)  # aiqc.versions.runtime() when it was fit; null in older files

    @classmethod
    def _from_plan(cls, splitset: Splitset, fold: Fold | None, plan: "EncoderPlan") -> "Encoder":
        from aiqc.data.encode import describe_params
        from aiqc.versions import runtime

        return cls.create(
            splitset=splitset, fold=fold, side=plan.side, position=plan.position,
            class_path=plan.spec.class_path, params=describe_params(plan.spec.transformer),
            dtypes=plan.spec.dtypes, columns_requested=plan.spec.columns, columns=plan.columns,
            output_columns=plan.output_columns, fitted=plan.fitted, source=user_source(plan.fitted),
            categories=class_order(plan.fitted, splitset.label.classes) if plan.side == "label" else None,
            versions=runtime(("scikit-learn", "numpy")),
        )

    def transform(self, frame: "pd.DataFrame") -> "np.ndarray":
        """Apply the fitted transformer to the encoder's columns of ``frame``."""
        from aiqc.data.encode import transform

        return transform(self.fitted, frame[self.columns])


def class_order(fitted: Any, classes: list | None) -> list:
    """The class values in the order of a fitted label encoder's outputs: its ``categories_``
    (OneHotEncoder / OrdinalEncoder sort them), else the label's sorted ``classes`` (none: [])."""
    categories = getattr(fitted, "categories_", None)
    if categories is not None and len(categories) == 1:
        return [v.item() if hasattr(v, "item") else v for v in categories[0]]
    return list(classes or [])


def user_source(fitted: Any) -> str | None:
    """The source text of the user's own classes and functions in a fitted transformer (a custom
    transformer class, a FunctionTransformer's function, ...), each under a comment naming it;
    None when it uses none, or their source cannot be found."""
    import inspect
    import textwrap

    parts = []
    for obj in PickleField.user_objects(fitted):
        try:
            text = textwrap.dedent(inspect.getsource(obj))
        except (OSError, TypeError):
            continue
        parts.append(f"# {obj.__module__}.{obj.__qualname__}\n{text}")
    return "\n\n".join(parts) or None
