"""``aiqc.Pipeline.Tabular.make``: from a DataFrame or file to a stored, encoded Splitset
in one call. Everything is validated and computed first, then written in one transaction."""

from __future__ import annotations

import logging
from typing import Any

from aiqc.data import plan as planning
from aiqc.database import ensure_setup
from aiqc.orm import Dataset, Feature, Label, Splitset
from aiqc.tags import check_tags

logger = logging.getLogger(__name__)


class _Tabular:
    @staticmethod
    def make(
        df_or_path: Any,
        label_column: str,
        label_encoder: dict | None = None,
        feature_cols_excluded: str | list[str] | None = None,
        feature_encoders: dict | list[dict] | None = None,
        size_test: float = 0.22,
        size_validation: float | None = None,
        fold_count: int | None = None,
        bin_count: int | None = None,
        *,
        random_state: int | None = None,
        name: str | None = None,
        description: str | None = None,
        parse_dates: list[str] | None = None,
        tags: list[str] | None = None,
    ) -> Splitset:
        """Store a table, its label and features, stratified splits (and folds) and the
        encoders fit on training rows; return the :class:`~aiqc.orm.Splitset`.

        Parameters
        ----------
        df_or_path : a DataFrame, or a path to a .csv, .tsv or .parquet file.
        label_column : the column to predict.
        label_encoder : ``dict(sklearn_preprocess=OneHotEncoder())`` or None.
        feature_cols_excluded : column(s) that are not features; must include the label.
        feature_encoders : list of ``dict(sklearn_preprocess=..., dtypes=[...])`` or
            ``dict(sklearn_preprocess=..., columns=[...])``. Numeric columns no encoder
            claims pass through; non-numeric ones must be claimed.
        size_test, size_validation : fractions of all rows; ``size_validation`` must be
            None with folds.
        fold_count : k stratified folds over the training rows (test stays held out).
        bin_count : stratify a continuous label by this many quantile bins.
        random_state : seed of the split; drawn at random (and stored) when None.
        name, description : free text stored with the splitset and dataset.
        tags : a list of strings stored with the splitset (``list_splitsets(tag=...)``;
            change them later with ``splitset.set_tags(...)``).
        parse_dates : column(s) to read as dates (a value that is not a date is an error).
        """
        tags = check_tags(tags)
        dataset_plan = planning.plan_dataset(df_or_path, name=name, description=description, parse_dates=parse_dates)
        df = dataset_plan.df
        label_plan = planning.plan_label(df, label_column)
        feature_plan = planning.plan_feature(df, feature_cols_excluded, label_column)
        split_plan = planning.plan_splits(label_plan, size_test, size_validation, fold_count, bin_count, random_state)
        encoder_plans = planning.plan_encoders(df, label_plan, feature_plan, split_plan, label_encoder, feature_encoders)

        with ensure_setup().atomic():
            dataset = Dataset._from_plan(dataset_plan)
            label = Label._from_plan(dataset, label_plan)
            feature = Feature._from_plan(dataset, feature_plan)
            splitset = Splitset._from_plan(label, feature, split_plan, name=name, description=description, tags=tags)
            splitset._write_encoders(encoder_plans)
        logger.info(
            "splitset %s: %s train / %s validation / %s test rows%s", splitset.id, splitset.count_train,
            splitset.count_validation, splitset.count_test,
            f", {split_plan.fold_count} folds" if split_plan.fold_count else "",
        )
        return splitset


def store_arrays(plan: Any, label_column: str, label_encoder: Any = None, feature_encoders: Any = None,
                 size_test: Any = 0.22, size_validation: Any = None, fold_count: Any = None, bin_count: Any = None,
                 random_state: Any = None, tags: Any = None) -> Splitset:
    """The shared second half of ``Pipeline.Image.make`` and ``Pipeline.Sequence.make``: from a
    checked :class:`~aiqc.data.arrays.ArrayDatasetPlan` (samples, and a table of one row per
    sample holding ``label_column``) to a stored Splitset. Label, stratified splits and folds as
    for tables; the feature encoders fit on the training samples' channels. Everything is
    computed first, then written in one transaction."""
    from aiqc.data import arrays

    tags = check_tags(tags)
    label_plan = planning.plan_label(plan.df, label_column)
    # the table's columns (file names, ids, the label) are not features: the model sees the samples
    feature_plan = planning.FeaturePlan(columns=[], excluded=[str(c) for c in plan.df.columns])
    split_plan = planning.plan_splits(label_plan, size_test, size_validation, fold_count, bin_count, random_state)
    encoder_plans = arrays.plan_encoders(plan, label_plan, split_plan, label_encoder, feature_encoders)

    with ensure_setup().atomic():
        dataset = Dataset._from_array_plan(plan)
        label = Label._from_plan(dataset, label_plan)
        feature = Feature._from_plan(dataset, feature_plan)
        splitset = Splitset._from_plan(label, feature, split_plan, name=plan.name, description=plan.description,
                                       tags=tags)
        splitset._write_encoders(encoder_plans)
    logger.info("splitset %s: %s %ss of shape %s, %s train / %s validation / %s test%s", splitset.id, len(plan.array),
                plan.modality, tuple(plan.sample_shape), splitset.count_train, splitset.count_validation,
                splitset.count_test, f", {split_plan.fold_count} folds" if split_plan.fold_count else "")
    return splitset


class Pipeline:
    """``Pipeline.Tabular.make(...)``: the one-call data pipeline for tables."""

    Tabular = _Tabular
