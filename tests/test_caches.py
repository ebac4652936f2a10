"""What a worker caches: each scope (a fold, or the splitset) is encoded once, however its
jobs are ordered, and loading a model encodes nothing (the shapes fn_build received are
stored with the job)."""

from __future__ import annotations

import numpy as np
import pytest

import aiqc
from aiqc import training
from aiqc.database import clear_caches
from aiqc.orm import Job, Splitset

import fns
from fns import reference_make

pytestmark = pytest.mark.backends
pytest.importorskip("torch")

FOLDS = 3


def _fold_queue(iris, combinations: int = 2) -> aiqc.orm.Queue:
    splitset = reference_make(iris, size_validation=None, fold_count=FOLDS, random_state=0)
    return aiqc.Experiment.make(library="pytorch", analysis_type="classification_multi", fn_build=fns.torch_build,
                                fn_train=fns.torch_train, splitset_id=splitset.id, repeat_count=1,
                                hyperparameters={"neuron_count": list(range(4, 4 + combinations)),
                                                 "batch_size": [32], "epoch_count": [1]})


def test_fold_jobs_encode_each_fold_once_and_hit_the_cache(db, iris, monkeypatch):
    queue = _fold_queue(iris, combinations=2)  # 6 jobs, the 3 folds of each combination in turn
    encoded = []
    real_samples = Splitset.samples

    def counting_samples(self, split="train", fold=None):
        encoded.append((split, fold))
        return real_samples(self, split, fold)

    monkeypatch.setattr(Splitset, "samples", counting_samples)
    clear_caches()
    summary = queue.run_jobs(progress=False)
    assert summary.complete == 2 * FOLDS
    info = training.encoded_scope.cache_info()
    # the worker's start-up and each of the 6 jobs look their scope up; each fold misses once
    assert (info.misses, info.hits) == (FOLDS, 1 + 2 * FOLDS - FOLDS)
    assert sorted(encoded) == sorted((split, fold) for fold in range(FOLDS) for split in ("train", "validation", "test"))


def test_get_model_and_predict_encode_nothing(db, iris, monkeypatch):
    queue = _fold_queue(iris, combinations=1)
    queue.run_jobs(progress=False)
    job = queue.jobs.order_by(Job.id).first()
    assert (job.features_shape, job.label_shape) == ([4], [3])
    expected = job.predict(iris.head(5))
    clear_caches()

    def refuse(self, *args, **kwargs):
        raise AssertionError("loading a model encoded a split")

    monkeypatch.setattr(Splitset, "samples", refuse)
    model = Job.get_by_id(job.id).get_model()
    assert sum(p.numel() for p in model.parameters()) == 4 * 4 + 4 + 4 * 3 + 3
    got = Job.get_by_id(job.id).predict(iris.head(5))
    np.testing.assert_allclose(got.filter(like="probability").to_numpy(), expected.filter(like="probability").to_numpy())


def test_predict_checks_the_rows_before_it_loads_the_model(db, iris, monkeypatch):
    """Rows that fail their checks fail before the model is read (and its library imported)."""
    from aiqc.exceptions import ValidationError

    queue = _fold_queue(iris, combinations=1)
    queue.run_jobs(progress=False)
    job = queue.jobs.order_by(Job.id).first()
    clear_caches()
    loads = []
    real = Job.get_model
    monkeypatch.setattr(Job, "get_model", lambda self: loads.append(self.id) or real(self))
    with pytest.raises(ValidationError, match=r"df: expected the feature columns the model was trained on"):
        job.predict(iris.head(3).drop(columns=["petal_width"]))
    assert loads == []
    assert len(job.predict(iris.head(3))) == 3 and len(job.predict(iris.head(2))) == 2
    assert loads == [job.id]  # loaded once, on the first rows that passed


def test_a_job_recorded_without_shapes_still_loads(db, iris):
    """A job recorded by an older aiqc has no stored shapes: its training split tells them."""
    queue = _fold_queue(iris, combinations=1)
    queue.run_jobs(progress=False)
    job = queue.jobs.order_by(Job.id).first()
    Job.update(features_shape=None, label_shape=None).where(Job.id == job.id).execute()
    old = Job.get_by_id(job.id)
    assert old.input_shapes() == ((4,), (3,))
    assert old.get_model() is not None
