"""What a job produced: metrics per split, per-epoch history, predictions, the model."""

from __future__ import annotations

import peewee as pw

from aiqc.backends import Library
from aiqc.orm.base import ArrayField, BaseModel, EnumField
from aiqc.orm.job import Job


class Metric(BaseModel):
    """One metric of a job on one split, e.g. validation accuracy."""

    job = pw.ForeignKeyField(Job, backref="metric_rows", on_delete="CASCADE")
    split = pw.TextField()  # train / validation / test
    name = pw.TextField()  # accuracy, f1, roc_auc, r2, ...
    value = pw.FloatField(null=True)  # null where undefined (e.g. roc_auc of one class)

    class Meta:
        # the second: a covering index, from which the metrics pivot of results.metrics_to_pandas
        # reads every value without visiting the table (SQLite: USING COVERING INDEX)
        indexes = ((("job", "split", "name"), True), (("job", "split", "name", "value"), False))


class HistoryEntry(BaseModel):
    """One recorded value of a job at one epoch, e.g. ``val_loss`` at epoch 3."""

    job = pw.ForeignKeyField(Job, backref="history_rows", on_delete="CASCADE")
    epoch = pw.IntegerField()
    name = pw.TextField()  # loss, val_loss, accuracy, ...
    value = pw.FloatField(null=True)

    class Meta:
        indexes = ((("job", "name", "epoch"), True),)


class IntermediateValue(BaseModel):
    """A per-epoch value reported while a job of a pruned search trains (``search.prune_on``)."""

    job = pw.ForeignKeyField(Job, backref="intermediate_rows", on_delete="CASCADE")
    epoch = pw.IntegerField()
    value = pw.FloatField(null=True)

    class Meta:
        indexes = ((("job", "epoch"), True),)


class Prediction(BaseModel):
    """A job's predictions on one split: the dataset rows, predictions and class probabilities."""

    job = pw.ForeignKeyField(Job, backref="prediction_rows", on_delete="CASCADE")
    split = pw.TextField()
    indices = ArrayField()  # dataset rows, aligned with predictions
    predictions = ArrayField()  # class indices (classification) or values (regression)
    probabilities = ArrayField(null=True)

    class Meta:
        indexes = ((("job", "split"), True),)


class TrainedModel(BaseModel):
    """A job's trained model, serialised by its library's backend."""

    job = pw.ForeignKeyField(Job, backref="model_rows", unique=True, on_delete="CASCADE")
    library = EnumField(Library)
    blob = pw.BlobField()
