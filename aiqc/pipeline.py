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


class _Image:
    @staticmethod
    def make(
        source: Any,
        label_column: str = "label",
        label_encoder: dict | None = None,
        feature_encoders: dict | list[dict] | None = None,
        size_test: float = 0.22,
        size_validation: float | None = None,
        fold_count: int | None = None,
        bin_count: int | None = None,
        *,
        labels: Any = None,
        file_column: str = "file",
        resize: tuple[int, int] | None = None,
        color_mode: str | None = None,
        random_state: int | None = None,
        name: str | None = None,
        description: str | None = None,
        tags: list[str] | None = None,
    ) -> Splitset:
        """Store images, their labels, stratified splits (and folds) and the encoders fit on
        training images; return the :class:`~aiqc.orm.Splitset`.

        Images are stored channels last, (N, height, width, channels), in the dtype they were
        decoded in (uint8 for 8-bit PNG/JPEG); a grayscale image keeps a channel axis of one.
        Keras models receive them so, ``features_shape == (H, W, C)``; PyTorch models receive
        channels-first tensors, (N, C, H, W), and ``features_shape == (C, H, W)``. The
        dataset's table holds one row per image: ``file_column`` (its name relative to the
        folder; None for an array) and ``label_column``.

        Parameters
        ----------
        source : a folder of PNG/JPEG files (labels from subfolder names,
            ``folder/<label>/<file>``, or from ``labels``); a list of image file paths (with
            ``labels``, kept in the order given); or a numpy array (N, H, W) or (N, H, W, C)
            with ``labels``. Hidden files are ignored; any other file in the folder is an error.
        label_column : the name of the label column (of ``labels`` when it is a table).
        label_encoder : ``dict(sklearn_preprocess=OneHotEncoder())`` or None.
        feature_encoders : ``dict(sklearn_preprocess=...)`` or a list of them, applied to every
            channel and fit on the training images only: ``MinMaxScaler()`` scales each
            channel to [0, 1] (by the training images' minimum and maximum),
            ``StandardScaler()`` standardises each channel (by the training images' mean and
            standard deviation). Without one, models receive the pixel values as float32.
        size_test, size_validation : fractions of all images; ``size_validation`` must be
            None with folds.
        fold_count : k stratified folds over the training images (test stays held out).
        bin_count : stratify a continuous label by this many quantile bins.
        labels : for a folder, None (subfolder names) or a DataFrame or .csv/.tsv/.parquet
            path mapping ``file_column`` (names relative to the folder) to ``label_column``;
            for a list of files, one label per path or such a table (names relative to the
            files' common folder, or as given); for an array, a 1-D list/array of one label
            per image or a DataFrame with ``label_column``.
        file_column : the column of file names (in ``labels`` and in the stored table).
        resize : ``(height, width)``: Pillow resizes every image to it (bicubic); without it,
            images of different sizes are an error listing them.
        color_mode : ``"L"`` (8-bit gray), ``"RGB"`` or ``"RGBA"``: Pillow converts every
            image to it; without it, images of different modes (channel counts) are an error.
            ``resize`` and ``color_mode`` are recorded in ``Dataset.settings`` and applied the
            same way to image files given to ``predict``.
        random_state : seed of the split; drawn at random (and stored) when None.
        name, description : free text stored with the splitset and dataset.
        tags : a list of strings stored with the splitset.

        Every check runs before the first write: a bad image, label or argument leaves the
        database as it was. The same images and table given again reuse the stored dataset
        (:class:`~aiqc.exceptions.DataReusedNotice`).
        """
        from aiqc.data.images import plan_images

        check_tags(tags)
        plan = plan_images(source, label_column, labels=labels, file_column=file_column, resize=resize,
                           color_mode=color_mode, name=name, description=description)
        return store_arrays(plan, label_column, label_encoder=label_encoder, feature_encoders=feature_encoders,
                            size_test=size_test, size_validation=size_validation, fold_count=fold_count,
                            bin_count=bin_count, random_state=random_state, tags=tags)


class _Sequence:
    @staticmethod
    def make(
        source: Any,
        label_column: str = "label",
        label_encoder: dict | None = None,
        feature_encoders: dict | list[dict] | None = None,
        size_test: float = 0.22,
        size_validation: float | None = None,
        fold_count: int | None = None,
        bin_count: int | None = None,
        *,
        labels: Any = None,
        sequence_column: str = "sequence_id",
        order_column: str | None = None,
        feature_columns: str | list[str] | None = None,
        feature_names: list[str] | None = None,
        padding: str | None = None,
        truncating: str | None = None,
        length: int | None = None,
        pad_value: float = 0.0,
        random_state: int | None = None,
        name: str | None = None,
        description: str | None = None,
        tags: list[str] | None = None,
    ) -> Splitset:
        """Store sequences (time series), their labels, stratified splits (and folds) and the
        encoders fit on the training sequences; return the :class:`~aiqc.orm.Splitset`.

        Samples are (N, timesteps, features) for both Keras and PyTorch, batch first: Keras
        models take them after ``keras.Input(shape=features_shape)`` (an LSTM or GRU layer
        next), PyTorch models as ``nn.GRU(features_shape[1], hidden, batch_first=True)`` does;
        ``fn_build`` receives ``features_shape == (timesteps, features)``. The dataset's table
        holds one row per sequence: ``sequence_column`` (its id; its position for an array)
        and ``label_column``.

        Parameters
        ----------
        source : a 3-D numpy array (samples, timesteps, features) with ``labels``; or a long
            DataFrame (or a path to a .csv, .tsv or .parquet file of one) of one row per
            sequence x timestep, holding ``sequence_column``, ``label_column`` (constant within
            a sequence), the feature columns and optionally ``order_column``. Sequences keep the
            order in which their ids first appear.
        label_column : the label's column (of the long DataFrame or of ``labels``; with a list
            or array of labels, the name it gets in the dataset's table).
        label_encoder : ``dict(sklearn_preprocess=OneHotEncoder())`` or None.
        feature_encoders : ``dict(sklearn_preprocess=...)`` or a list of them, applied feature
            by feature (e.g. ``StandardScaler()`` standardises each feature) and fit on the
            training sequences only: every timestep of every training sequence (with folds,
            each fold's training sequences). Without one, models receive the values as float32.
        size_test, size_validation : fractions of all sequences; ``size_validation`` must be
            None with folds.
        fold_count : k stratified folds over the training sequences (test stays held out).
        bin_count : stratify a continuous label by this many quantile bins.
        labels : with an array source, a 1-D array or list of one label per sequence, or a
            DataFrame holding ``label_column``; None with a DataFrame source.
        sequence_column : the long DataFrame's column of sequence ids (with an array source,
            the name of the table's column of positions).
        order_column : the long DataFrame's column of time order within a sequence (numbers or
            dates; a value repeated within a sequence is an error); None: the rows' order.
        feature_columns : the long DataFrame's (numeric) feature columns; None: every numeric
            column but the sequence, order and label columns.
        feature_names : with an array source, the names of its last axis (default
            ``feature_0``, ``feature_1``, ...).
        padding : sequences of unequal length are an error unless ``'post'`` (pad after the
            values) or ``'pre'`` (before them) pads them to the longest, or to ``length``.
        truncating : with ``length``, ``'post'`` keeps the first ``length`` timesteps of a
            longer sequence and ``'pre'`` its last ones; None: a longer sequence is an error.
        length : the timesteps of every sample; None: the longest sequence's.
        pad_value : the value of padded timesteps (default 0.0).
        random_state : seed of the split; drawn at random (and stored) when None.
        name, description : free text stored with the splitset and dataset.
        tags : a list of strings stored with the splitset.

        What was done (the columns used, padding, truncating, length, pad value and a summary
        of the lengths found) is recorded in ``Dataset.settings`` and applied the same way to a
        long DataFrame given to ``predict``. Every check runs before the first write: a bad
        sequence or argument leaves the database as it was.
        """
        from aiqc.data.sequences import plan_sequences

        check_tags(tags)
        plan = plan_sequences(source, label_column, labels=labels, sequence_column=sequence_column,
                              order_column=order_column, feature_columns=feature_columns, feature_names=feature_names,
                              padding=padding, truncating=truncating, length=length, pad_value=pad_value, name=name,
                              description=description)
        return store_arrays(plan, label_column, label_encoder=label_encoder, feature_encoders=feature_encoders,
                            size_test=size_test, size_validation=size_validation, fold_count=fold_count,
                            bin_count=bin_count, random_state=random_state, tags=tags)


class Pipeline:
    """The one-call data pipelines: ``Pipeline.Tabular.make(...)`` for tables,
    ``Pipeline.Image.make(...)`` for images, ``Pipeline.Sequence.make(...)`` for sequences. Each
    returns a stored :class:`~aiqc.orm.Splitset`; everything downstream is the same."""

    Tabular = _Tabular
    Image = _Image
    Sequence = _Sequence
