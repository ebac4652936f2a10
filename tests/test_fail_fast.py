"""Experiment.make fails fast, before any write: grid keys against what the user's functions
read, fn_build called once with the first combination and its output width checked against
the label; and a single hyperparameter value is taken as a list of one."""

from __future__ import annotations

import textwrap

import pytest

import aiqc
from aiqc.backends import Backend, get_backend
from aiqc.exceptions import ValidationError
from aiqc.functions import check_grid_keys, hyperparameter_reads
from aiqc.orm import Hyperparamset

import fns

GRID = {"neuron_count": [4], "batch_size": [3], "epoch_count": [1]}


@pytest.fixture
def splitsets(db, monkeypatch):
    """(iris multiclass with one-hot labels, diabetes regression, breast cancer binary in one column)."""
    monkeypatch.setattr(Backend, "check_installed", lambda self: None)  # checks before the model need no library
    return fns.analysis_splitsets()


@pytest.fixture
def torch_installed():
    pytest.importorskip("torch")


def _make(splitsets, analysis_type="classification_multi", **changes):
    kwargs = dict(library="pytorch", analysis_type=analysis_type, fn_build=fns.torch_build, fn_train=fns.torch_train,
                  hyperparameters=GRID, splitset_id=splitsets[analysis_type])
    kwargs.update(changes)
    return aiqc.Experiment.make(**kwargs)


def _refused(splitsets, row_counts, message, **changes):
    """Assert make raises ``message`` and writes nothing; return the error."""
    before = row_counts()
    with pytest.raises(ValidationError, match=message) as caught:
        _make(splitsets, **changes)
    assert row_counts() == before
    return caught.value


# --- user functions ---------------------------------------------------------------------------
def build_width(features_shape, label_shape, **hp):
    """A PyTorch model with ``hp['width']`` outputs."""
    from torch import nn

    return nn.Sequential(nn.Linear(features_shape[0], 4), nn.ReLU(), nn.Linear(4, hp["width"]))


def build_raises(features_shape, label_shape, **hp):
    raise RuntimeError(f"boom with {hp['neuron_count']} neurons")


def build_wrong_inputs(features_shape, label_shape, **hp):
    from torch import nn

    return nn.Linear(features_shape[0] + 1, label_shape[0])


def build_keyword_only(features_shape, label_shape, *, dropout, **hp):
    return fns.torch_build(features_shape, label_shape, **hp)


def build_optional(features_shape, label_shape, **params):
    """Optional reads: hp.get with a default, a read guarded by `in`, a read inside try/except KeyError."""
    from torch import nn

    layers = [nn.Linear(features_shape[0], params.get("units", 4)), nn.ReLU()]
    if "dropout" in params:
        layers.append(nn.Dropout(params["dropout"]))
    try:
        layers.append(nn.Linear(params.get("units", 4), label_shape[0] * params["multiplier"]))
    except KeyError:
        layers.append(nn.Linear(params.get("units", 4), label_shape[0]))
    return nn.Sequential(*layers)


def build_forwards(features_shape, label_shape, **hp):
    return fns.torch_build(features_shape, label_shape, **hp)


def lose_reads(**hp):
    import torch

    return torch.nn.CrossEntropyLoss(label_smoothing=hp["smoothing"])


def predict_own(model, samples_predict):
    return model(samples_predict["features"]).argmax(dim=1), None


def _exec_function(source: str, name: str):
    """A function whose source inspect cannot find (as with exec or a REPL)."""
    namespace: dict = {}
    exec(textwrap.dedent(source), namespace)
    return namespace[name]


# --- bad input, refused before any write ---------------------------------------------------------
def test_a_grid_key_typo_names_the_closest_key(splitsets, row_counts):
    _refused(splitsets, row_counts,
             r"^hyperparameters: fn_build reads hp\['neuron_count'\], which is not in the grid; received keys "
             r"\['neuron_cnt', 'batch_size', 'epoch_count'\] \(did you mean 'neuron_cnt'\?\)\.$",
             hyperparameters={"neuron_cnt": [4], "batch_size": [3], "epoch_count": [1]})


def test_a_missing_key_without_a_close_one_says_how_to_make_it_optional(splitsets, row_counts):
    _refused(splitsets, row_counts,
             r"hyperparameters: fn_lose reads hp\['smoothing'\], which is not in the grid; received keys "
             r"\['neuron_count', 'batch_size', 'epoch_count'\]\. Add 'smoothing' to hyperparameters, or give it a "
             r"default with hp.get\('smoothing', default\)\.", fn_lose=lose_reads)


def test_a_keyword_only_parameter_without_default_must_be_in_the_grid(splitsets, row_counts):
    _refused(splitsets, row_counts,
             r"hyperparameters: fn_build takes the parameter 'dropout' \(it has no default\), which is not in the "
             r"grid; received keys \['neuron_count', 'batch_size', 'epoch_count'\]", fn_build=build_keyword_only)


@pytest.mark.parametrize("analysis_type, width, message", [
    ("classification_multi", 2, r"fn_build: expected a model with 3 outputs per row for 'classification_multi' with "
                                r"3 classes; received one with 2\. Make its last layer 3 wide \(label_shape\[0\], one "
                                r"per one-hot column\)\."),
    ("classification_binary", 3, r"fn_build: expected a model with 1 output per row \(the probability of class index "
                                 r"1: end in a sigmoid\) or 2 \(one per class\) for 'classification_binary'; received "
                                 r"one with 3\. Make its last layer 1 wide with a sigmoid activation\."),
    ("regression", 2, r"fn_build: expected a model with 1 output per row for 'regression' \(one per label column\); "
                      r"received one with 2\. Make its last layer 1 wide \(label_shape\[0\]\)\."),
], ids=["multiclass", "binary", "regression"])
def test_a_model_of_the_wrong_output_width_is_refused(splitsets, row_counts, torch_installed, analysis_type, width,
                                                      message):
    _refused(splitsets, row_counts, message, analysis_type=analysis_type, fn_build=build_width,
             hyperparameters={**GRID, "width": [width, 3 if width != 3 else 1]})


def test_fn_build_raising_is_refused_with_the_first_combination(splitsets, row_counts, torch_installed):
    error = _refused(splitsets, row_counts,
                     r"^fn_build: calling it with the first combination \{'neuron_count': 4, 'batch_size': 3, "
                     r"'epoch_count': 1\} failed: RuntimeError: boom with 4 neurons$",
                     fn_build=build_raises, hyperparameters={**GRID, "neuron_count": [4, 8]})
    assert isinstance(error.__cause__, RuntimeError)


def test_fn_build_returning_no_model_is_refused(splitsets, row_counts, torch_installed):
    _refused(splitsets, row_counts,
             r"fn_build: expected a torch.nn.Module for library='pytorch'; received builtins.str \(from the first "
             r"combination \{'neuron_count': 4, 'batch_size': 3, 'epoch_count': 1\}\)\.",
             fn_build=fns.build_not_a_model)


def test_a_model_that_cannot_take_the_features_is_refused(splitsets, row_counts, torch_installed):
    error = _refused(splitsets, row_counts,
                     r"fn_build: the model built with the first combination .* cannot take a batch of zeros with "
                     r"features_shape \(4,\): RuntimeError: .*", fn_build=build_wrong_inputs)
    assert isinstance(error.__cause__, RuntimeError)


def test_an_unreadable_fn_build_is_still_called(splitsets, row_counts, torch_installed):
    """exec'd source cannot be parsed, so the grid-key check skips it; calling it still fails fast."""
    build = _exec_function("""
        def build(features_shape, label_shape, **hp):
            return hp['missing']
    """, "build")
    _refused(splitsets, row_counts, r"fn_build: calling it with the first combination .* failed: KeyError: 'missing'",
             fn_build=build)


def test_a_sampled_search_builds_with_each_distributions_low_bound(splitsets, row_counts, torch_installed):
    from aiqc.search import Categorical, Int, Search

    _refused(splitsets, row_counts,
             r"fn_build: expected a model with 3 outputs .*received one with 2\.", fn_build=build_width,
             hyperparameters={**GRID, "width": Int(2, 5), "neuron_count": Categorical([8, 16])},
             search=Search("random", n_trials=2))


def test_keras_output_width_is_checked_too(splitsets, row_counts):
    pytest.importorskip("keras")
    _refused(splitsets, row_counts, r"fn_build: expected a model with 1 output per row for 'regression'.*received "
                                    r"one with 2\.", library="keras", analysis_type="regression",
             fn_build=_keras_two_outputs, fn_train=fns.keras_train)


def _keras_two_outputs(features_shape, label_shape, **hp):
    import keras

    return keras.Sequential([keras.Input(shape=features_shape), keras.layers.Dense(hp["neuron_count"]),
                             keras.layers.Dense(2)])


# --- accepted ---------------------------------------------------------------------------------------
def test_a_single_value_is_a_list_of_one(splitsets, row_counts, torch_installed):
    before = row_counts()
    queue = _make(splitsets, repeat_count=1, hyperparameters={"epoch_count": 1, "batch_size": [8, 16],
                                                               "neuron_count": 4, "activation": "relu"})
    assert row_counts()["Job"] - before["Job"] == 2 == queue.job_count
    assert queue.experiment.hyperparameters == {"epoch_count": [1], "batch_size": [8, 16], "neuron_count": [4],
                                                "activation": ["relu"]}
    stored = [h.hyperparameters for h in queue.experiment.hyperparamsets.order_by(Hyperparamset.index)]
    assert stored == [{"epoch_count": 1, "batch_size": 8, "neuron_count": 4, "activation": "relu"},
                      {"epoch_count": 1, "batch_size": 16, "neuron_count": 4, "activation": "relu"}]


@pytest.mark.parametrize("changes", [
    dict(fn_build=build_optional),  # hp.get('units', 4), `'dropout' in hp`, try/except KeyError
    dict(fn_build=build_forwards),  # passes **hp on: only direct reads are checked
    dict(fn_train=_exec_function("""
        def train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
            return hp['not_in_the_grid']
    """, "train")),  # source unreadable: the check is skipped
    dict(fn_build=build_width, hyperparameters={**GRID, "width": [5]}, fn_predict=predict_own),  # own fn_predict
], ids=["optional reads", "forwards hp", "unreadable source", "own fn_predict"])
def test_what_cannot_be_known_wrong_is_accepted(splitsets, torch_installed, changes):
    assert _make(splitsets, **changes).job_count == 1


@pytest.mark.parametrize("width", [1, 2])
def test_binary_takes_one_or_two_outputs(splitsets, torch_installed, width):
    queue = _make(splitsets, analysis_type="classification_binary", fn_build=build_width,
                  hyperparameters={**GRID, "width": width})
    assert queue.job_count == 1


def test_without_the_library_the_model_is_not_built(splitsets, monkeypatch):
    monkeypatch.setattr(Backend, "installed", lambda self: False)
    assert _make(splitsets, fn_build=fns.build_not_a_model).job_count == 1


# --- the analysis, unit by unit -------------------------------------------------------------------
def test_reads_of_hp_whatever_its_name():
    def build(features_shape, label_shape, units, *, act, drop=0.1, **params):
        if "k1" in params:
            params["k1"]
        if params.get("k2"):
            params["k2"]
        try:
            params["k3"]
        except (ValueError, KeyError):
            pass
        params["k4"] = 1
        params.pop("k5")
        params.pop("k6", None)
        params.setdefault("k7", 3)
        return params["k8"], params["k4"], [params["k9"] for _ in range(2)]

    required, optional = hyperparameter_reads(build, skip=2)
    assert required == {"units", "act", "k5", "k8", "k9"}
    assert optional == {"drop", "k1", "k2", "k3", "k4", "k6", "k7"}


def test_rebinding_or_updating_hp_leaves_only_the_signature():
    def rebinds(features_shape, label_shape, **hp):
        hp = {"x": 1, **hp}
        return hp["x"]

    def updates(features_shape, label_shape, **hp):
        hp.update(x=1)
        return hp["x"]

    assert hyperparameter_reads(rebinds, skip=2) == hyperparameter_reads(updates, skip=2) == (set(), set())


def test_unreadable_functions_are_skipped_silently():
    exec_built = _exec_function("def f(**hp):\n    return hp['x']\n", "f")
    assert hyperparameter_reads(exec_built) == (set(), set())
    assert hyperparameter_reads(len) == (set(), set())
    check_grid_keys({"fn_lose": exec_built, "fn_optimize": print, "fn_predict": None}, [])


def test_a_lambda_is_read_when_its_source_parses():
    build = lambda features_shape, label_shape, **kw: kw["rate"]  # noqa: E731
    assert hyperparameter_reads(build, skip=2) == ({"rate"}, set())
    with pytest.raises(ValidationError, match=r"fn_build reads kw\['rate'\], which is not in the grid; received keys "
                                              r"\['rates'\] \(did you mean 'rates'\?\)"):
        check_grid_keys({"fn_build": build}, ["rates"])


def test_fn_optimize_without_a_model_reads_its_first_parameter():
    def optimize(learning_rate=0.01, **hp):
        return hp["momentum"]

    assert hyperparameter_reads(optimize) == ({"momentum"}, {"learning_rate"})
    check_grid_keys({"fn_optimize": optimize}, ["momentum"])


def test_output_width_of_a_pytorch_model_leaves_it_in_train_mode():
    torch = pytest.importorskip("torch")
    backend = get_backend("pytorch")
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3))
    assert backend.output_width(model, (4,)) == 3 and model.training
    assert backend.output_width(torch.nn.Identity(), (4,)) == 4  # no parameters: on the CPU
    assert backend.output_width(torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Flatten(0)), (4,)) == 1  # 1-D
    with pytest.raises(ValueError, match=r"one row per input row"):
        backend.output_width(torch.nn.Flatten(0, 1), (4,))
