"""One suite run against every backend: defaults, training, prediction, history, storage.

Tests taking the ``backend`` fixture are marked ``backends`` and skipped when the library
is not installed; the registry, import and output-conversion tests need neither.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from aiqc.analysis import AnalysisType, Prediction
from aiqc.backends import BACKENDS, Library, get_backend
from aiqc.backends.keras import KerasBackend
from aiqc.exceptions import MissingExtraError, ValidationError

MULTI, BINARY, REGRESSION = AnalysisType  # in definition order
EPOCHS = 2
TRAIN_ROWS = 45


# --- tiny models and data ----------------------------------------------------------------
def iris_like(analysis: AnalysisType, rows: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four float features and labels encoded as the pipeline encodes them (one-hot for
    multiclass, one 0/1 column for binary, one float column for regression)."""
    rng = np.random.default_rng(seed)
    classes = np.arange(rows) % 3
    features = rng.normal(size=(rows, 4)) + classes[:, np.newaxis]
    if analysis is MULTI:
        labels = np.eye(3)[classes]
    elif analysis is BINARY:
        labels = (classes > 0).astype(np.float64)[:, np.newaxis]
    else:
        labels = features @ np.array([[0.5], [-1.0], [2.0], [0.1]])
    return features, labels


def build(library: str, n_features: int, n_outputs: int, analysis: AnalysisType):
    """Keras ends in softmax/sigmoid; PyTorch ends in logits for multiclass (CrossEntropyLoss)
    and in Sigmoid for binary (BCELoss), as the default losses expect."""
    if library == "keras":
        import keras

        activation = {MULTI: "softmax", BINARY: "sigmoid"}.get(analysis)
        return keras.Sequential([keras.Input(shape=(n_features,)), keras.layers.Dense(8, activation="relu"),
                                 keras.layers.Dense(n_outputs, activation=activation)])
    from torch import nn

    layers = [nn.Linear(n_features, 8), nn.ReLU(), nn.Linear(8, n_outputs)]
    return nn.Sequential(*layers, *([nn.Sigmoid()] if analysis is BINARY else []))


def keras_train(model, loser, optimizer, samples_train, samples_evaluate):
    import keras

    classify = "Crossentropy" in type(loser).__name__
    model.compile(loss=loser, optimizer=optimizer, metrics=["accuracy"] if classify else [])
    model.fit(samples_train["features"], samples_train["labels"],
              validation_data=(samples_evaluate["features"], samples_evaluate["labels"]),
              verbose=0, batch_size=16, epochs=EPOCHS, callbacks=[keras.callbacks.History()])
    return model


def torch_train(model, loser, optimizer, samples_train, samples_evaluate):
    import aiqc

    return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate, epoch_count=EPOCHS, batch_size=16)


TRAIN = {"keras": keras_train, "pytorch": torch_train}


def train_job(backend, analysis, features, labels, seed=0, n_outputs=None):
    """What the runner does for one job, with default loss and optimizer."""
    backend.configure(threads=1, seed=seed)
    model = backend.prepare_model(build(backend.name, features.shape[1], n_outputs or labels.shape[1], analysis))
    loser = backend.default_loss(analysis, labels.shape)
    optimizer = backend.default_optimizer(model, analysis, {})
    samples_train = backend.to_samples(features[:TRAIN_ROWS], labels[:TRAIN_ROWS], analysis)
    samples_evaluate = backend.to_samples(features[TRAIN_ROWS:], labels[TRAIN_ROWS:], analysis)
    return TRAIN[backend.name](model, loser, optimizer, samples_train, samples_evaluate)


@pytest.fixture(scope="module", params=[pytest.param(name, marks=pytest.mark.backends) for name in BACKENDS])
def backend(request):
    backend = get_backend(request.param)
    for module in backend.modules:
        pytest.importorskip(module)
    return backend


@pytest.fixture(scope="module", params=list(AnalysisType), ids=lambda a: a.value)
def analysis(request):
    return request.param


@pytest.fixture(scope="module")
def trained(backend, analysis):
    features, labels = iris_like(analysis)
    return train_job(backend, analysis, features, labels), features


# --- the suite, per backend -----------------------------------------------------------------
def test_predictions_have_the_shape_of_the_analysis(backend, analysis, trained):
    model, features = trained
    prediction = backend.predict(model, features, analysis)
    n = len(features)
    if analysis is REGRESSION:
        assert prediction.predictions.shape == (n,) and np.isfinite(prediction.predictions).all()
        assert prediction.probabilities is None
        return
    assert prediction.predictions.shape == (n,) and prediction.predictions.dtype == np.int64
    probabilities = prediction.probabilities
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    if analysis is BINARY:
        assert probabilities.shape == (n,)
        np.testing.assert_array_equal(prediction.predictions, (probabilities >= 0.5).astype(int))
    else:
        assert probabilities.shape == (n, 3)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-6)
        np.testing.assert_array_equal(prediction.predictions, probabilities.argmax(axis=1))


def test_history_has_one_value_per_epoch(backend, analysis, trained):
    history = backend.history(trained[0])
    expected = {"loss", "val_loss"} | ({"accuracy", "val_accuracy"} if analysis.is_classification else set())
    assert set(history) == expected
    for values in history.values():
        assert len(values) == EPOCHS and all(isinstance(v, float) and np.isfinite(v) for v in values)


def test_dump_then_load_predicts_the_same(backend, analysis, trained):
    model, features = trained
    blob = backend.dump(model)
    assert isinstance(blob, bytes) and blob
    loaded = backend.load(blob, rebuild=lambda: build(backend.name, 4, 3 if analysis is MULTI else 1, analysis))
    before, after = backend.predict(model, features, analysis), backend.predict(loaded, features, analysis)
    np.testing.assert_array_equal(after.predictions, before.predictions)
    if analysis.is_classification:
        np.testing.assert_array_equal(after.probabilities, before.probabilities)


def test_samples_are_float32_copies_in_the_library_format(backend, analysis):
    features, labels = iris_like(analysis, rows=6)
    samples = backend.to_samples(features, labels, analysis)
    x, y = (backend.to_numpy(samples[k]) for k in ("features", "labels"))
    assert x.dtype == np.float32 and y.dtype == np.float32 and y.shape == labels.shape
    np.testing.assert_allclose(x, features, rtol=1e-6)
    samples["features"][0, 0] = 1e6  # a user's in-place edit
    assert features[0, 0] != 1e6
    assert set(backend.to_samples(features, None, analysis)) == {"features", "labels"}
    assert backend.to_samples(features, None, analysis)["labels"] is None


def test_multiclass_labels_in_one_column_train_with_the_sparse_default_loss(backend):
    features, one_hot = iris_like(MULTI)
    classes = one_hot.argmax(axis=1)[:, np.newaxis].astype(np.float64)  # OrdinalEncoder's output
    samples = backend.to_samples(features, classes, MULTI)
    if backend.name == "pytorch":  # CrossEntropyLoss takes class indices as 1-D int64
        assert str(samples["labels"].dtype) == "torch.int64" and tuple(samples["labels"].shape) == (60,)
    model = train_job(backend, MULTI, features, classes, n_outputs=3)
    prediction = backend.predict(model, features, MULTI)
    assert prediction.probabilities.shape == (60, 3)
    assert len(backend.history(model)["loss"]) == EPOCHS


DEFAULT_LOSSES = {
    "keras": {(MULTI, (60, 3)): "CategoricalCrossentropy", (MULTI, (60, 1)): "SparseCategoricalCrossentropy",
              (BINARY, (60, 1)): "BinaryCrossentropy", (REGRESSION, (60, 1)): "MeanAbsoluteError"},
    "pytorch": {(MULTI, (60, 3)): "CrossEntropyLoss", (MULTI, (60, 1)): "CrossEntropyLoss",
                (BINARY, (60, 1)): "BCELoss", (REGRESSION, (60, 1)): "L1Loss"},
}


def test_default_loss_per_analysis_type_and_label_shape(backend):
    for (analysis, label_shape), expected in DEFAULT_LOSSES[backend.name].items():
        assert type(backend.default_loss(analysis, label_shape)).__name__ == expected


def test_default_optimizer_is_adamax_at_the_given_learning_rate(backend):
    model = build(backend.name, 4, 1, REGRESSION)
    default = backend.default_optimizer(model, REGRESSION, {})
    tuned = backend.default_optimizer(model, REGRESSION, {"learning_rate": 0.05})
    assert type(default).__name__ == "Adamax"
    if backend.name == "keras":
        assert float(default.learning_rate) == pytest.approx(0.01)
        assert float(tuned.learning_rate) == pytest.approx(0.05)
    else:
        assert default.param_groups[0]["lr"] == 0.01 and tuned.param_groups[0]["lr"] == 0.05


def test_is_model_only_for_models_of_the_library(backend):
    assert backend.is_model(build(backend.name, 4, 1, REGRESSION))
    for not_a_model in (None, "model", np.zeros(3), object(), build):
        assert not backend.is_model(not_a_model)


def test_history_is_empty_for_an_untrained_model(backend):
    assert backend.history(build(backend.name, 4, 1, REGRESSION)) == {}


# --- backend specifics ----------------------------------------------------------------------
@pytest.mark.backends
def test_same_seed_gives_identical_pytorch_weights():
    pytest.importorskip("torch")
    backend = get_backend("pytorch")
    features, labels = iris_like(MULTI)

    def weights(seed):
        model = train_job(backend, MULTI, features, labels, seed=seed)
        return [t.detach().cpu().numpy() for t in model.state_dict().values()]

    first, again, other = weights(7), weights(7), weights(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.backends
def test_record_epoch_feeds_the_history_from_a_users_own_loop():
    torch = pytest.importorskip("torch")
    import aiqc

    backend = get_backend("pytorch")
    model = build("pytorch", 4, 1, REGRESSION)
    features, labels = iris_like(REGRESSION)
    samples = backend.to_samples(features, labels, REGRESSION)
    loser, optimizer = backend.default_loss(REGRESSION, labels.shape), torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(3):
        optimizer.zero_grad()
        loss = loser(model(samples["features"]), samples["labels"])
        loss.backward()
        optimizer.step()
        aiqc.record_epoch(model, loss=loss.item(), lr=0.01)
    history = backend.history(model)
    assert set(history) == {"loss", "lr"} and history["lr"] == [0.01] * 3
    assert history["loss"][-1] < history["loss"][0]


@pytest.mark.backends
def test_torch_fit_names_a_bad_batch_size():
    pytest.importorskip("torch")
    from aiqc.backends.pytorch import fit

    backend = get_backend("pytorch")
    model = build("pytorch", 4, 1, REGRESSION)
    samples = backend.to_samples(*iris_like(REGRESSION, rows=4), REGRESSION)
    with pytest.raises(ValidationError, match=r"^batch_size: expected an integer >= 1; received 0\.$"):
        fit(model, backend.default_loss(REGRESSION, (4, 1)), None, samples, batch_size=0)


@pytest.mark.backends
def test_keras_load_rebuilds_a_model_it_cannot_deserialise_safely():
    keras = pytest.importorskip("keras")
    backend = get_backend("keras")

    def rebuild():  # a Lambda layer: load_model refuses it in safe mode
        return keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(2), keras.layers.Lambda(lambda t: t * 2)])

    model = rebuild()
    features = iris_like(REGRESSION, rows=5)[0]
    loaded = backend.load(backend.dump(model), rebuild)
    assert loaded is not model
    np.testing.assert_allclose(backend.outputs(loaded, features), backend.outputs(model, features), rtol=1e-6)


def test_a_missing_library_names_the_pip_extra():
    class Missing(KerasBackend):
        modules = ("aiqc_absent_one", "aiqc_absent_two")

    message = ("library: 'keras' needs aiqc_absent_one and aiqc_absent_two, which are not installed; "
               "received library='keras'. Install it with: pip install 'aiqc[keras]'")
    with pytest.raises(MissingExtraError) as error:
        Missing().import_library()
    assert str(error.value) == message and isinstance(error.value, ImportError)


# --- registry, imports, analysis types ------------------------------------------------------
def test_registry_returns_one_cached_backend_per_name():
    for name in BACKENDS:
        assert get_backend(name).name == name and get_backend(name) is get_backend(name)


@pytest.mark.parametrize(("library", "shown"), [("sklearn", "'sklearn'"), ("Keras", "'Keras'"), (None, "None")])
def test_unknown_library_is_named(library, shown):
    with pytest.raises(ValidationError) as error:
        get_backend(library)
    assert str(error.value) == f"library: expected one of 'keras', 'pytorch'; received {shown}."


def test_unknown_analysis_type_is_named():
    with pytest.raises(ValidationError) as error:
        AnalysisType.parse("clasification")
    assert str(error.value) == ("analysis_type: expected one of 'classification_multi', 'classification_binary', "
                                "'regression'; received 'clasification'.")
    assert AnalysisType.parse("regression") is REGRESSION and AnalysisType.parse(BINARY) is BINARY
    assert [a.is_classification for a in AnalysisType] == [True, True, False]


def test_importing_the_backends_imports_no_deep_learning_library():
    script = ("import sys, json, aiqc.backends, aiqc.backends.keras, aiqc.backends.pytorch\n"
              "[aiqc.backends.get_backend(name) for name in aiqc.backends.BACKENDS]\n"
              "print(json.dumps([m for m in ('tensorflow', 'keras', 'torch') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


# --- raw outputs -> predictions (no library needed) -------------------------------------------
def to_prediction(outputs, analysis):
    """Raw outputs -> Prediction, as the analysis type's registry entry reads them."""
    return analysis.spec.to_prediction(outputs)


def test_every_backend_has_one_row_per_analysis_type():
    assert set(BACKENDS) == set(Library)
    for library in Library:
        backend = get_backend(library)
        assert set(backend.defaults) == set(AnalysisType), library
        assert all(callable(row.loss) and callable(row.optimizer) and callable(row.predict)
                   for row in backend.defaults.values())


def test_multiclass_logits_get_a_softmax_and_probabilities_are_kept():
    logits = np.array([[2.0, -1.0, 0.5], [-3.0, 4.0, 0.0]])
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    from_logits, from_probabilities = to_prediction(logits, MULTI), to_prediction(softmax, MULTI)
    np.testing.assert_allclose(from_logits.probabilities, softmax)
    np.testing.assert_array_equal(from_probabilities.probabilities, softmax)
    np.testing.assert_array_equal(from_logits.predictions, [0, 1])


def test_binary_outputs_become_the_positive_class_probability():
    sigmoid = to_prediction(np.array([[0.2], [0.5], [0.9]]), BINARY)
    np.testing.assert_array_equal(sigmoid.probabilities, [0.2, 0.5, 0.9])
    np.testing.assert_array_equal(sigmoid.predictions, [0, 1, 1])
    with np.errstate(over="raise"):  # large logits: no overflow
        logits = to_prediction(np.array([-1000.0, 0.0, 3.0, 1000.0]), BINARY)
    np.testing.assert_allclose(logits.probabilities, [0.0, 0.5, 1 / (1 + np.exp(-3.0)), 1.0])
    np.testing.assert_array_equal(logits.predictions, [0, 1, 1, 1])
    two_columns = to_prediction(np.array([[0.7, 0.3], [0.1, 0.9]]), BINARY)
    np.testing.assert_allclose(two_columns.probabilities, [0.3, 0.9])


def test_regression_outputs_are_flattened_when_single():
    single = to_prediction(np.arange(4.0)[:, np.newaxis], REGRESSION)
    assert isinstance(single, Prediction) and single.probabilities is None
    np.testing.assert_array_equal(single.predictions, [0.0, 1.0, 2.0, 3.0])
    assert to_prediction(np.ones((4, 2)), REGRESSION).predictions.shape == (4, 2)


@pytest.mark.parametrize(("analysis", "shape"), [(MULTI, (5, 1)), (BINARY, (5, 3))])
def test_outputs_of_the_wrong_width_are_named(analysis, shape):
    expected = rf"model output: expected .*{analysis.value}.*received shape \({shape[0]}, {shape[1]}\)"
    with pytest.raises(ValueError, match=expected):
        to_prediction(np.zeros(shape), analysis)
