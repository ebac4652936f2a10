"""Splitset (train/validation/test rows) and Fold (k folds over the training rows)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import peewee as pw

from aiqc.exceptions import ValidationError
from aiqc.orm.base import Annotated, ArrayField, BaseModel, TagsField, database_proxy, query_on_class
from aiqc.orm.feature import Feature
from aiqc.orm.label import Label

if TYPE_CHECKING:
    import pandas as pd

    from aiqc.data.plan import EncoderPlan, SplitPlan
    from aiqc.deletion import Deleted
    from aiqc.orm.encoder import Encoder


def _index_array(rows: np.ndarray | None) -> np.ndarray | None:
    if rows is None:
        return None
    return rows.astype(np.int32 if len(rows) == 0 or rows.max() < 2**31 else np.int64)


class Splitset(Annotated, BaseModel):
    """Which rows train, validate and test; the seed and settings that chose them.

    Row indices are positions in the dataset (0..n-1), stored as ``.npy`` arrays. When
    ``fold_count`` is set, each :class:`Fold` divides the training rows further.
    """

    label = pw.ForeignKeyField(Label, backref="splitsets", on_delete="CASCADE")
    feature = pw.ForeignKeyField(Feature, backref="splitsets", on_delete="CASCADE")
    name = pw.TextField(null=True)
    description = pw.TextField(null=True)
    tags = TagsField(null=True, default=list)  # ["churn", "2026-q3"]; null (no tags) in older files
    size_test = pw.FloatField()
    size_validation = pw.FloatField(null=True)
    bin_count = pw.IntegerField(null=True)
    fold_count = pw.IntegerField(null=True)
    random_state = pw.IntegerField()
    stratify = pw.TextField()  # "classes", "bins" or "none"
    count_train = pw.IntegerField()
    count_validation = pw.IntegerField()
    count_test = pw.IntegerField()
    indices_train = ArrayField()
    indices_validation = ArrayField(null=True)
    indices_test = ArrayField()

    # --- writing -----------------------------------------------------------------
    @classmethod
    def make(cls, label: Label, feature: Feature, size_test: float = 0.22, size_validation: float | None = None,
             fold_count: int | None = None, bin_count: int | None = None, random_state: int | None = None,
             name: str | None = None, description: str | None = None, tags: Any = None) -> "Splitset":
        """Split the rows of ``label``'s dataset (stratified by class, or by quantile bins)."""
        from aiqc.data.plan import plan_feature, plan_splits, plan_label
        from aiqc.tags import check_tags, check_text

        check_text(name, "name")
        check_text(description, "description")
        tags = check_tags(tags)
        if not isinstance(label, Label):
            raise ValidationError.expected("label", "a Label (from dataset.make_label)", label)
        if not isinstance(feature, Feature):
            raise ValidationError.expected("feature", "a Feature (from dataset.make_feature)", feature)
        if label.dataset.is_array:
            raise ValidationError(f"label: expected a Label of a table for Splitset.make; dataset {label.dataset_id} "
                                  f"holds {label.dataset.modality}s: split them with Pipeline.Image.make or "
                                  "Pipeline.Sequence.make.")
        if label.dataset_id != feature.dataset_id:
            raise ValidationError(
                f"feature: expected a Feature of the label's dataset {label.dataset_id}; "
                f"received one of dataset {feature.dataset_id}."
            )
        df = label.dataset.to_pandas()
        plan_feature(df.head(0), feature.columns_excluded, label.column, parameter="feature")
        splits = plan_splits(plan_label(df, label.column), size_test, size_validation, fold_count,
                             bin_count, random_state)
        with database_proxy.atomic():
            return cls._from_plan(label, feature, splits, name=name, description=description, tags=tags)

    @classmethod
    def _from_plan(cls, label: Label, feature: Feature, plan: "SplitPlan", name: str | None = None,
                   description: str | None = None, tags: list[str] | None = None) -> "Splitset":
        counts = {s: (0 if rows is None else len(rows)) for s, rows in plan.indices.items()}
        splitset = cls.create(
            label=label, feature=feature, name=name, description=description, tags=tags or [],
            size_test=plan.size_test, size_validation=plan.size_validation, bin_count=plan.bin_count,
            fold_count=plan.fold_count, random_state=plan.random_state, stratify=plan.stratify,
            count_train=counts["train"], count_validation=counts["validation"], count_test=counts["test"],
            indices_train=_index_array(plan.indices["train"]),
            indices_validation=_index_array(plan.indices["validation"]),
            indices_test=_index_array(plan.indices["test"]),
        )
        for index, (fold_train, fold_held_out) in enumerate(plan.folds):
            Fold.create(splitset=splitset, fold_index=index, count_train=len(fold_train),
                        count_validation=len(fold_held_out), indices_train=_index_array(fold_train),
                        indices_validation=_index_array(fold_held_out))
        return splitset

    def fit_encoders(self, label_encoder: Any = None, feature_encoders: Any = None) -> list["Encoder"]:
        """Fit encoders on the training rows (and on each fold's training rows) and store them."""
        from aiqc.data.plan import FeaturePlan, plan_encoders, plan_label

        if self.encoders.count():
            raise ValidationError(f"splitset: expected a splitset without encoders; splitset {self.id} already has them.")
        if self.label.dataset.is_array:
            raise ValidationError(f"splitset: expected a splitset of a table for fit_encoders; splitset {self.id} holds "
                                  f"{self.label.dataset.modality}s, whose encoders Pipeline.Image.make / "
                                  "Pipeline.Sequence.make fit.")
        df = self.label.dataset.to_pandas()
        plans = plan_encoders(df, plan_label(df, self.label.column),
                              FeaturePlan(self.feature.columns, self.feature.columns_excluded),
                              self._split_plan(), label_encoder, feature_encoders)
        with database_proxy.atomic():
            return self._write_encoders(plans)

    def _write_encoders(self, plans: list["EncoderPlan"]) -> list["Encoder"]:
        from aiqc.orm.encoder import Encoder

        folds = {f.fold_index: f for f in self.folds}
        return [Encoder._from_plan(self, folds.get(p.fold_index), p) for p in plans]

    def _split_plan(self) -> "SplitPlan":
        from aiqc.data.plan import SplitPlan

        folds = [(f.indices_train, f.indices_validation) for f in self.folds.order_by(Fold.fold_index)]
        indices = {s: self.indices(s) if s != "validation" or self.count_validation else None
                   for s in ("train", "validation", "test")}
        return SplitPlan(self.size_test, self.size_validation, self.bin_count, self.fold_count,
                         self.random_state, self.stratify, indices, folds)

    # --- reading -----------------------------------------------------------------
    @property
    def split_names(self) -> list[str]:
        """The splits that hold rows: 'train', 'validation' (unless folded), 'test'."""
        return [s for s in ("train", "validation", "test") if getattr(self, f"count_{s}")] if not self.fold_count \
            else ["train", "validation", "test"]

    @property
    def has_validation(self) -> bool:
        """Whether jobs can evaluate on something other than test: a validation split, or folds
        (each fold's held-out rows)."""
        return bool(self.fold_count or self.count_validation)

    def get_fold(self, fold: int | None) -> "Fold | None":
        """The :class:`Fold` with index ``fold`` (checked against the splitset's folds); None for None."""
        if fold is None:
            return None
        if not self.fold_count:
            raise ValidationError(f"fold: expected None, splitset {self.id} has no folds; received {fold!r}.")
        if isinstance(fold, bool) or not isinstance(fold, (int, np.integer)) or not 0 <= fold < self.fold_count:
            raise ValidationError.expected("fold", f"None or a fold index in 0..{self.fold_count - 1}", fold)
        return self.folds.where(Fold.fold_index == int(fold)).get()

    def indices(self, split: str = "train", fold: int | None = None) -> np.ndarray:
        """Dataset row positions of ``split``. With ``fold``, 'train' and 'validation' are
        that fold's training and held-out rows; 'test' is always the held-out test split."""
        if split not in ("train", "validation", "test"):
            raise ValidationError.expected("split", "'train', 'validation' or 'test'", split)
        record = self.get_fold(fold)
        if record is not None and split != "test":
            return getattr(record, f"indices_{split}")
        rows = getattr(self, f"indices_{split}")
        if rows is None:
            hint = " (it has folds: pass fold=...)" if self.fold_count else ""
            raise ValidationError(f"split: splitset {self.id} has no 'validation' rows{hint}; received 'validation'.")
        return rows

    def encoders_for(self, fold: int | None = None, side: str | None = None) -> list["Encoder"]:
        """The encoders fit for a scope (the fold's, or the train split's), optionally of one
        ``side`` ('label' or 'feature'), in side and position order."""
        from aiqc.orm.encoder import Encoder

        record = self.get_fold(fold)
        query = self.encoders.where(Encoder.fold.is_null() if record is None else Encoder.fold == record)
        if side is not None:
            query = query.where(Encoder.side == side)
        return list(query.order_by(Encoder.side, Encoder.position))

    def features_to_pandas(self, split: str = "train", fold: int | None = None, encoded: bool = False) -> "pd.DataFrame":
        """Feature columns of ``split``; ``encoded=True`` applies the encoders fit for that
        split's scope (the fold's when ``fold`` is given): encoded blocks in encoder order,
        then the numeric pass-through columns."""
        rows = self.indices(split, fold)
        dataset = self.feature.dataset
        if dataset.is_array:
            raise ValidationError(f"splitset: expected a table for features_to_pandas; splitset {self.id} holds "
                                  f"{dataset.modality}s: use features_to_numpy(split, fold).")
        frame = dataset.to_pandas(self.feature.columns, rows)
        return self.encode_features(frame, fold) if encoded else frame

    def encode_features(self, frame: "pd.DataFrame", fold: int | None = None) -> "pd.DataFrame":
        """Apply the feature encoders of a scope (the fold's, or the train split's) to raw
        feature rows; encoded blocks in encoder order, then the pass-through columns (bools as 0/1)."""
        from aiqc.data.encode import encode_features

        return encode_features(frame, self.encoders_for(fold, side="feature"), self.feature.columns)

    def label_to_pandas(self, split: str = "train", fold: int | None = None, encoded: bool = False) -> "pd.DataFrame":
        """The label column of ``split``; ``encoded=True`` applies the label encoder fit for that
        split's scope (the fold's when ``fold`` is given), if there is one."""
        import pandas as pd

        rows = self.indices(split, fold)
        frame = self.label.dataset.to_pandas([self.label.column], rows)
        encoders = self.encoders_for(fold, side="label") if encoded else []
        if not encoders:
            return frame
        return pd.DataFrame(encoders[0].transform(frame), columns=encoders[0].output_columns, index=frame.index)

    def class_names(self, fold: int | None = None) -> list:
        """Class values in the order of the model's outputs: the label encoder's categories
        (OneHotEncoder / OrdinalEncoder sort them), else the label's sorted classes.

        Read from the JSON recorded when the encoder was fit, never by unpickling it, so reading
        results and charts runs no stored code. Encoders stored before aiqc recorded them: a
        OneHotEncoder / OrdinalEncoder with ``categories='auto'`` sorts the training classes,
        which are the label's sorted classes; for any other label encoder those are used with a
        :class:`aiqc.exceptions.DataWarning`, as they may not be its order."""
        encoders = self.encoders_for(fold, side="label")
        if not encoders:
            return list(self.label.classes or [])
        encoder = encoders[0]
        if encoder.categories is not None:
            return list(encoder.categories)
        module, _, name = encoder.class_path.rpartition(".")
        sorting = (module.startswith("sklearn.") and name in ("OneHotEncoder", "OrdinalEncoder")
                   and (encoder.params or {}).get("categories") == "auto")
        if not sorting:
            import warnings

            from aiqc.exceptions import DataWarning

            warnings.warn(f"splitset {self.id}: its label encoder ({encoder.class_path}) was stored before aiqc "
                          "recorded class names; using the label's sorted classes, which may not be the encoder's "
                          "order (fit the encoders again, on a new splitset, to record them).", DataWarning, stacklevel=2)
        return list(self.label.classes or [])

    def label_encoder(self, fold: int | None = None) -> Any:
        """The fitted label encoder of a scope (the fold's, or the train split's); None without one.
        Unpickled, after its sha256 is verified: stored code runs, so only for trusted databases
        (predict and training use it; reading results and charts do not)."""
        encoders = self.encoders_for(fold, side="label")
        return encoders[0].fitted if encoders else None

    def features_to_numpy(self, split: str = "train", fold: int | None = None, encoded: bool = True) -> np.ndarray:
        """Feature columns of ``split`` as an array, encoded by default (see :meth:`features_to_pandas`).
        Images and sequences: the samples of ``split``, (N, H, W, C) or (N, timesteps, features),
        encoded channel by channel (float32) by default, as stored otherwise."""
        dataset = self.feature.dataset
        if dataset.is_array:
            samples = dataset.to_array(self.indices(split, fold))
            return self.encode_samples(samples, fold) if encoded else samples
        return self.features_to_pandas(split, fold, encoded).to_numpy()

    def encode_samples(self, samples: np.ndarray, fold: int | None = None) -> np.ndarray:
        """Images or sequences through the feature encoders of a scope (the fold's, or the train
        split's), channel by channel: float32 of the same shape."""
        from aiqc.data.arrays import encode_samples

        encoders = self.encoders_for(fold, side="feature")
        return encode_samples(samples, [e.fitted for e in encoders], list(self.feature.dataset.channels))

    def label_to_numpy(self, split: str = "train", fold: int | None = None, encoded: bool = True) -> np.ndarray:
        """The label of ``split`` as a 2-D array, encoded by default (see :meth:`label_to_pandas`)."""
        return self.label_to_pandas(split, fold, encoded).to_numpy()

    def samples(self, split: str = "train", fold: int | None = None) -> dict[str, np.ndarray]:
        """Encoded ``{"features": ..., "labels": ...}`` arrays for ``split``."""
        return {"features": self.features_to_numpy(split, fold), "labels": self.label_to_numpy(split, fold)}

    @query_on_class
    def delete(self) -> Deleted:
        """Delete this splitset with its folds and encoders, and its label and feature unless
        another splitset uses them; never the dataset. Refused
        (:class:`aiqc.exceptions.InUseError`, naming them) while queues use it. Returns what
        went (:class:`aiqc.deletion.Deleted`). ``Splitset.delete()`` on the class is peewee's
        DELETE query."""
        from aiqc.deletion import delete

        return delete("splitset", self.id)


class Fold(BaseModel):
    """One of k folds over the splitset's training rows: train on ``indices_train``,
    validate on ``indices_validation`` (its held-out rows)."""

    splitset = pw.ForeignKeyField(Splitset, backref="folds", on_delete="CASCADE")
    fold_index = pw.IntegerField()
    count_train = pw.IntegerField()
    count_validation = pw.IntegerField()
    indices_train = ArrayField()
    indices_validation = ArrayField()

    class Meta:
        indexes = ((("splitset", "fold_index"), True),)
