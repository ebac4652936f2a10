"""Predicting on new raw rows with a stored job: the same encoders, the stored model,
labels decoded back to their original values.

The work is :class:`aiqc.predictor.Predictor`'s; this module builds one from the database
(once per job and process) and calls it, as ``aiqc.load_predictor`` does from an exported
file, so the two cannot disagree.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aiqc import caches
from aiqc.exceptions import ValidationError
from aiqc.predictor import (ArrayInput, FeatureEncoder, Predictor, TableInput, check_categories, check_finite,
                            check_rows, to_frame)
from aiqc.states import JobState

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["build_predictor", "check_categories", "check_finite", "check_rows", "predict", "predictor_for",
           "to_frame"]


def build_predictor(job: Any) -> Predictor:
    """A :class:`Predictor` of ``job`` read from the database: its fold's fitted encoders (unpickled,
    after their sha256 is verified), its model, and the experiment's ``fn_predict`` if it has one.
    What it takes (raw rows, or images / sequences) is the splitset's dataset's: see :func:`_input`."""
    experiment = job.queue.experiment
    splitset = experiment.splitset
    fold = job.fold_index
    return Predictor(
        library=experiment.library, analysis_type=experiment.analysis_type, input=_input(splitset, fold),
        label_column=splitset.label.column, label_encoder=splitset.label_encoder(fold),
        class_names=splitset.class_names(), load_model=job.get_model,
        fn_predict=experiment.load_functions().get("fn_predict"), job_id=job.id,
    )


def _input(splitset: Any, fold: int | None) -> TableInput | ArrayInput:
    """What a predictor of ``splitset`` takes, with the fitted feature encoders of ``fold``'s scope:
    a table's feature columns and dtypes, or an image / sequence dataset's sample shape, dtype,
    channels and the settings its arrays were made with."""
    feature, dataset = splitset.feature, splitset.feature.dataset
    encoders = [FeatureEncoder(list(e.columns), e.fitted, list(e.output_columns), e.class_path)
                for e in splitset.encoders_for(fold, side="feature")]
    if dataset.is_array:
        return ArrayInput(dataset.modality, dataset.sample_shape, dataset.sample_dtype, dataset.channels,
                          dataset.settings, encoders)
    dtypes = dataset.dtypes
    return TableInput(feature.columns, {c: dtypes[c] for c in feature.columns}, splitset.label.column,
                      feature.columns_excluded, encoders)


@caches.register
@lru_cache(maxsize=4)
def _predictor(job_id: int, finished_at: Any, database: str) -> Predictor:
    from aiqc.orm import Job

    return build_predictor(Job.get_by_id(job_id))


def predictor_for(job: Any) -> Predictor:
    """The :class:`Predictor` of a COMPLETE ``job``, built once per process and database."""
    from aiqc.orm.base import database_key

    if job.state is not JobState.COMPLETE:
        raise ValidationError(f"job: expected a {JobState.COMPLETE} job; job {job.id} is {job.state}.")
    return _predictor(job.id, job.finished_at, database_key())  # finished_at: a job run again, or an id reused


def predict(job: Any, df: Any) -> "pd.DataFrame":
    """Predictions for raw rows (a DataFrame, a dict for one row, or a list of dicts): a
    ``prediction`` column in the label's original values, plus ``probability_<class>``
    columns for classification; indexed like ``df`` (0..n-1 for dicts). Categories the
    encoders never saw warn (or fail, where the encoder refuses them); rows that encode to
    NaN/inf fail, naming the rows and columns.

    A job of an image or sequence splitset takes samples instead: a numpy array (N, *shape),
    one sample, image files or a folder, or a long DataFrame of sequences (see
    :meth:`aiqc.predictor.Predictor.predict`); the result is indexed 0..n-1."""
    # warnings go to the caller of job.predict: check_categories, _predict, here, Job.predict, caller
    return predictor_for(job)._predict(df, stacklevel=5)
