"""Experiment.make refuses bad input before writing anything (no TF/torch needed)."""

from __future__ import annotations

import pytest

import aiqc
from aiqc import datum
from aiqc.backends._base import Backend
from aiqc.exceptions import MissingExtraError, ValidationError

import fns
from fns import reference_make


@pytest.fixture
def splitsets(db, monkeypatch):
    """(iris multiclass, diabetes regression, breast cancer binary) splitsets; libraries
    count as installed so that each case reaches its own check."""
    monkeypatch.setattr(Backend, "check_installed", lambda self: None)
    ids = fns.analysis_splitsets()
    return {"multi": ids["classification_multi"], "regression": ids["regression"], "binary": ids["classification_binary"]}


def _call(splitsets, **changes):
    kwargs = dict(library="keras", analysis_type="classification_multi", fn_build=fns.keras_build,
                  fn_train=fns.keras_train, fn_lose=None, fn_optimize=None, fn_predict=None, repeat_count=1,
                  hyperparameters={"neuron_count": [12], "batch_size": [3], "epoch_count": [1]},
                  splitset_id=splitsets["multi"], hide_test=False)
    splitset = changes.pop("splitset", None)
    if splitset:
        kwargs["splitset_id"] = splitsets[splitset]
    kwargs.update(changes)
    return aiqc.Experiment.make(**kwargs)


def _build_two_args(features_shape):
    return None


def _train_fixed(model, loser, optimizer, samples_train, samples_evaluate, neuron_count, batch_size):
    return model


def _build_fixed(features_shape, label_shape, neuron_count, batch_size, epoch_count):
    return None


def _predict_one_arg(model):
    return None


def _optimize_too_many(model, other, **hp):
    return None


CASES = {
    "unknown library": (dict(library="sklearn"), r"library: expected one of 'keras', 'pytorch'; received 'sklearn'"),
    "library not a string": (dict(library=None), r"library: expected one of 'keras', 'pytorch'; received None"),
    "unknown analysis type": (dict(analysis_type="clasification"), r"analysis_type: expected one of 'classification_multi', 'classification_binary', 'regression'; received 'clasification'"),
    "regression on a string label": (dict(analysis_type="regression"), r"analysis_type: expected a classification type for the str label 'species'.*received 'regression'"),
    "binary on three classes": (dict(analysis_type="classification_binary"), r"analysis_type: expected 'classification_multi' for the label 'species' with 3 classes; received 'classification_binary'"),
    "multi on a continuous label": (dict(splitset="regression"), r"analysis_type: expected 'regression' for the continuous label 'progression' \(dtype float64\); received 'classification_multi'"),
    "binary on a continuous label": (dict(splitset="regression", analysis_type="classification_binary"), r"analysis_type: expected 'regression' for the continuous label 'progression'"),
    "missing splitset": (dict(splitset_id=9999), r"splitset_id: expected the id of an existing Splitset; received 9999"),
    "splitset object instead of id": (dict(splitset_id="1"), r"splitset_id: expected the integer id of a Splitset \(splitset.id\); received '1'"),
    "hyperparameters not a dict": (dict(hyperparameters=[("neuron_count", [1])]), r"hyperparameters: expected None or a dict of \{name: \[values\]\}"),
    "hyperparameter value a dict": (dict(hyperparameters={"neuron_count": {"low": 4}}), r"hyperparameters\['neuron_count'\]: expected a non-empty list of values \(or one value\); received \{'low': 4\}"),
    "hyperparameter empty list": (dict(hyperparameters={"neuron_count": []}), r"hyperparameters\['neuron_count'\]: expected a non-empty list of values \(or one value\); received \[\]"),
    "hyperparameter not storable": (dict(hyperparameters={"neuron_count": [object()]}), r"hyperparameters\['neuron_count'\]: expected values that can be stored as JSON"),
    "hyperparameter fn_build cannot take": (dict(fn_build=_build_fixed, hyperparameters={"neuron_count": [1], "batch_size": [1], "epoch_count": [1], "dropout": [0.1]}),
                                            r"hyperparameters: expected names that fn_build accepts \(it has no \*\*hp\); received \['dropout'\]"),
    "hyperparameter fn_train cannot take": (dict(fn_train=_train_fixed), r"hyperparameters: expected names that fn_train accepts .*received \['epoch_count'\]"),
    "hyperparameter named like an argument": (dict(hyperparameters={"model": [1]}), r"hyperparameters: expected names other than fn_train's own parameters .*received \['model'\]"),
    "repeat_count zero": (dict(repeat_count=0), r"repeat_count: expected an integer >= 1; received 0"),
    "repeat_count float": (dict(repeat_count=1.5), r"repeat_count: expected an integer >= 1; received 1.5"),
    "fn_build missing": (dict(fn_build=None), r"fn_build: expected a function fn_build\(features_shape, label_shape, \*\*hp\); received None"),
    "fn_build wrong signature": (dict(fn_build=_build_two_args), r"fn_build: expected a function fn_build\(features_shape, label_shape, \*\*hp\); received _build_two_args\(features_shape\)"),
    "fn_train not callable": (dict(fn_train="train"), r"fn_train: expected a function fn_train\(model, loser, optimizer, samples_train, samples_evaluate, \*\*hp\); received 'train'"),
    "fn_predict wrong signature": (dict(fn_predict=_predict_one_arg), r"fn_predict: expected a function fn_predict\(model, samples_predict\); received _predict_one_arg\(model\)"),
    "fn_optimize wrong signature": (dict(fn_optimize=_optimize_too_many), r"fn_optimize: expected a function fn_optimize\(model, \*\*hp\)"),
    "hide_test not a bool": (dict(hide_test="yes"), r"hide_test: expected True or False; received 'yes'"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_experiment_is_refused_before_any_write(case, splitsets, row_counts):
    changes, message = CASES[case]
    before = row_counts()
    with pytest.raises(ValidationError, match=message):
        _call(splitsets, **changes)
    assert row_counts() == before


def test_missing_extra_names_the_pip_extra(db, row_counts, monkeypatch):
    import importlib.util

    splitset = reference_make(datum.to_pandas("iris.tsv"))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    before = row_counts()
    with pytest.raises(MissingExtraError, match=r"library: 'pytorch' needs torch, which is not installed.*pip install 'aiqc\[pytorch\]'"):
        _call({"multi": splitset.id}, library="pytorch")
    assert row_counts() == before


def test_a_valid_call_writes_queue_and_jobs(splitsets, row_counts):
    before = row_counts()
    queue = _call(splitsets, repeat_count=2, hyperparameters={"neuron_count": [4, 8, 16], "batch_size": [3, 5],
                                                             "epoch_count": [1]})
    after = row_counts()
    assert after["Job"] - before["Job"] == 3 * 2 * 2 == queue.job_count
    assert after["Hyperparamset"] - before["Hyperparamset"] == 6
    assert after["Queue"] - before["Queue"] == 1 and after["Experiment"] - before["Experiment"] == 1
    assert queue.state_counts() == {"QUEUED": 12, "RUNNING": 0, "COMPLETE": 0, "PRUNED": 0, "FAILED": 0}


@pytest.mark.parametrize("library, installed", [("keras", True), ("pytorch", True), ("keras", False)])
def test_experiment_make_imports_only_its_own_library(tmp_path, library, installed):
    """Where its library is installed, make calls fn_build once (to check the model's output
    width), so it imports that library; never the other one, and none where it is not installed."""
    import ast
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import sys, aiqc
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parent)!r})
        from aiqc.backends._base import Backend
        Backend.check_installed = lambda self: None
        if not {installed!r}:
            Backend.installed = lambda self: False
        from fns import reference_make
        import fns
        aiqc.setup({str(tmp_path / 'x.db')!r})
        s = reference_make(aiqc.datum.to_pandas('iris.tsv'))
        build, train = fns.FUNCTIONS[{library!r}]
        aiqc.Experiment.make(library={library!r}, analysis_type='classification_multi', fn_build=build,
                             fn_train=train, hyperparameters={{'neuron_count': [4], 'batch_size': [3], 'epoch_count': [1]}},
                             splitset_id=s.id)
        print(sorted(m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    own = {"keras": {"keras", "tensorflow"}, "pytorch": {"torch"}}[library] if installed else set()
    assert set(ast.literal_eval(out.stdout.strip().splitlines()[-1])) <= own
