"""Predicting on new raw rows with a stored job: the same encoders, the stored model,
labels decoded back to their original values."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aiqc import caches
from aiqc.data.frames import is_numeric
from aiqc.exceptions import ValidationError
from aiqc.states import JobState

if TYPE_CHECKING:
    import pandas as pd


def check_rows(df: Any, feature_columns: list[str], dtypes: dict[str, str], label_column: str) -> "pd.DataFrame":
    """Raw rows with exactly the feature columns (the label column may be present and is
    ignored), of compatible dtypes; numeric columns are cast to the stored dtype."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ValidationError.expected("df", "a pandas DataFrame of raw rows", df)
    if df.empty:
        raise ValidationError(f"df: expected at least one row; received an empty DataFrame of shape {df.shape}.")
    missing = [c for c in feature_columns if c not in df.columns]
    if missing:
        raise ValidationError(f"df: expected the feature columns {feature_columns!r}; received a DataFrame missing {missing!r}.")
    extra = [c for c in df.columns if c not in feature_columns and c != label_column]
    if extra:
        raise ValidationError(f"df: expected only the feature columns {feature_columns!r}; received extra columns {extra!r}.")
    frame = df[feature_columns].copy()
    for column in feature_columns:
        stored = pd.api.types.pandas_dtype(dtypes[column])
        received = frame[column].dtype
        if is_numeric(stored) != is_numeric(received):
            raise ValidationError(
                f"df[{column!r}]: expected dtype {dtypes[column]} as in the training data; received {received}."
            )
        if is_numeric(stored) and received != stored:
            if frame[column].isna().any() and pd.api.types.is_integer_dtype(stored):
                raise ValidationError(f"df[{column!r}]: expected integers without missing values; received NaN.")
            frame[column] = frame[column].astype(stored)
    return frame.reset_index(drop=True)


@caches.register
@lru_cache(maxsize=4)
def _model(job_id: int, database: str) -> Any:
    from aiqc.orm import Job

    return Job.get_by_id(job_id).get_model()


def predict(job: Any, df: "pd.DataFrame") -> "pd.DataFrame":
    """Predictions for raw rows: a ``prediction`` column in the label's original values,
    plus ``probability_<class>`` columns for classification."""
    import pandas as pd

    from aiqc.backends import get_backend
    from aiqc.orm import database_proxy

    if job.state is not JobState.COMPLETE:
        raise ValidationError(f"job: expected a {JobState.COMPLETE} job; job {job.id} is {job.state}.")
    experiment = job.queue.experiment
    splitset = experiment.splitset
    feature, label = splitset.feature, splitset.label
    analysis = experiment.analysis_type
    frame = check_rows(df, feature.columns, feature.dataset.dtypes, label.column)
    fold = job.fold_index
    try:
        features = splitset.encode_features(frame, fold).to_numpy()
    except (ValueError, KeyError, TypeError) as error:
        raise ValidationError(
            f"df: expected values the stored encoders were fit on; encoding failed: {error}"
        ) from error

    backend = get_backend(experiment.library)
    model = _model(job.id, str(database_proxy.obj.database))
    fn_predict = experiment.load_functions().get("fn_predict")
    if fn_predict is None:
        result = backend.predict(model, features, analysis)
        predictions, probabilities = result.predictions, result.probabilities
    else:
        predictions, probabilities = (backend.to_numpy(v) for v in fn_predict(model, backend.to_samples(features, None, analysis)))
    columns = analysis.spec.decode(predictions, probabilities, splitset.label_encoder(fold), splitset.class_names())
    return pd.DataFrame(columns, index=df.index)
