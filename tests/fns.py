"""User functions for the experiment tests: the reference-usage shapes, per library and
analysis type. Tiny models and few epochs keep the suite fast."""

from __future__ import annotations

import os
import time



def unbind_database() -> None:
    """Close the database aiqc is bound to, unbind it and empty aiqc's caches (a test's teardown)."""
    from aiqc.database import clear_caches
    from aiqc.orm import database_proxy

    if database_proxy.obj is not None:
        database_proxy.obj.close()
        database_proxy.initialize(None)
    clear_caches()


# --- Keras ----------------------------------------------------------------------------
def keras_build(features_shape, label_shape, **hp):
    import keras

    activation = {"classification_multi": "softmax", "classification_binary": "sigmoid"}.get(hp.get("analysis"), None)
    return keras.Sequential([
        keras.Input(shape=features_shape),
        keras.layers.Dense(hp["neuron_count"], activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(label_shape[0], activation=activation),
    ])


def keras_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    import keras

    model.compile(loss=loser, optimizer=optimizer, metrics=["accuracy"] if hp.get("analysis", "").startswith("class") else [])
    model.fit(samples_train["features"], samples_train["labels"],
              validation_data=(samples_evaluate["features"], samples_evaluate["labels"]),
              verbose=0, batch_size=hp["batch_size"], epochs=hp["epoch_count"],
              callbacks=[keras.callbacks.History()])
    return model


# --- PyTorch --------------------------------------------------------------------------
def torch_build(features_shape, label_shape, **hp):
    import torch.nn as nn

    layers = [nn.Linear(features_shape[0], hp["neuron_count"]), nn.ReLU(), nn.Linear(hp["neuron_count"], label_shape[0])]
    if hp.get("analysis") == "classification_binary":
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def torch_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    import aiqc

    if hp.get("meet"):
        _meet(hp["meet"])
    delay = hp.get("sleep", 0)
    if delay:
        time.sleep(delay)
    return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                          epoch_count=hp["epoch_count"], batch_size=hp["batch_size"])


def _meet(folder, processes=2, timeout=120):
    """Wait (at most ``timeout`` s) until jobs of ``processes`` different processes have
    reached this point: a test of N worker processes then knows each of them took a job,
    however slowly one of them started."""
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, str(os.getpid())), "w").close()
    deadline = time.monotonic() + timeout
    while len(os.listdir(folder)) < processes and time.monotonic() < deadline:
        time.sleep(0.05)


FUNCTIONS = {"keras": (keras_build, keras_train), "pytorch": (torch_build, torch_train)}


# --- images: small CNNs (Keras channels last, PyTorch channels first) ----------------------------
def image_keras_build(features_shape, label_shape, **hp):
    """A one-convolution CNN on (H, W, C) images, softmax over the classes."""
    import keras

    return keras.Sequential([
        keras.Input(shape=features_shape),
        keras.layers.Conv2D(hp["filters"], 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(label_shape[0], activation="softmax"),
    ])


def image_keras_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    model.compile(loss=loser, optimizer=optimizer, metrics=["accuracy"])
    model.fit(samples_train["features"], samples_train["labels"],
              validation_data=(samples_evaluate["features"], samples_evaluate["labels"]),
              verbose=0, batch_size=hp["batch_size"], epochs=hp["epoch_count"])
    return model


def image_torch_build(features_shape, label_shape, **hp):
    """A one-convolution CNN on (C, H, W) images; logits over the classes."""
    import torch.nn as nn

    channels, height, width = features_shape
    return nn.Sequential(
        nn.Conv2d(channels, hp["filters"], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(hp["filters"] * (height // 2) * (width // 2), label_shape[0]),
    )


def image_torch_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    import aiqc

    return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                          epoch_count=hp["epoch_count"], batch_size=hp["batch_size"])


# --- data ---------------------------------------------------------------------------------
def reference_make(df, **overrides):
    """The reference-usage call, verbatim, with optional overrides."""
    import aiqc
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    kwargs = dict(
        df_or_path=df,
        label_column="species",
        label_encoder=dict(sklearn_preprocess=OneHotEncoder()),
        feature_cols_excluded="species",
        feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])],
        size_test=0.22,
        size_validation=0.12,
        fold_count=None,
        bin_count=None,
    )
    kwargs.update(overrides)
    return aiqc.Pipeline.Tabular.make(**kwargs)



# --- misbehaving functions -------------------------------------------------------------
def build_not_a_model(features_shape, label_shape, **hp):
    return "not a model"


def train_returns_nothing(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    return None


def train_raises(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    if hp.get("neuron_count") == 13:
        raise RuntimeError("boom in fn_train")
    return FUNCTIONS[hp["library"]][1](model, loser, optimizer, samples_train, samples_evaluate, **hp)


def train_interrupted_once(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    marker = hp["marker"]
    if hp["neuron_count"] == 8 and not os.path.exists(marker):
        open(marker, "w").close()
        raise KeyboardInterrupt
    return torch_train(model, loser, optimizer, samples_train, samples_evaluate, **hp)


# --- search ---------------------------------------------------------------------------------
def constant_build(features_shape, label_shape, **hp):
    """A model whose prediction is the hyperparameter ``x``: its error is known exactly."""
    import torch

    model = torch.nn.Linear(features_shape[0], 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.fill_(float(hp["x"]))
    return model


def constant_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    return model


def torch_train_lr(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    """torch_fit with the optimizer's learning rate taken from hp (default Adamax uses it)."""
    import aiqc

    return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                          epoch_count=hp["epoch_count"], batch_size=hp["batch_size"])


def analysis_splitsets() -> dict[str, int]:
    """One splitset id per analysis type: iris (multiclass, one-hot label), diabetes
    (regression, 3 quantile bins) and breast cancer (binary, one ordinal column)."""
    import aiqc
    from aiqc import datum
    from sklearn.preprocessing import OrdinalEncoder

    iris = reference_make(datum.to_pandas("iris.tsv"))
    diabetes = aiqc.Pipeline.Tabular.make(df_or_path=datum.to_pandas("diabetes.csv"), label_column="progression",
                                          feature_cols_excluded="progression", bin_count=3, size_validation=0.1)
    cancer = aiqc.Pipeline.Tabular.make(df_or_path=datum.to_pandas("breast_cancer.csv"), label_column="diagnosis",
                                        label_encoder=dict(sklearn_preprocess=OrdinalEncoder()),
                                        feature_cols_excluded="diagnosis", size_validation=0.1)
    return {"classification_multi": iris.id, "regression": diabetes.id, "classification_binary": cancer.id}


def torch_train_killed_once(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    """torch_train, but the first job to find no ``marker`` file creates it and kills its own
    process (SIGKILL: no handler runs, as after the kernel's OOM killer)."""
    import signal

    marker = hp.get("marker")
    if marker:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # one job wins, however many run
        except FileExistsError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    return torch_train(model, loser, optimizer, samples_train, samples_evaluate, **hp)


def torch_train_held(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    """torch_train, but it first waits while the ``hold`` file exists (at most 120 s): jobs stay
    RUNNING until the test lets them go, however slowly their workers started."""
    deadline = time.monotonic() + 120
    while os.path.exists(hp["hold"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    return torch_train(model, loser, optimizer, samples_train, samples_evaluate, **hp)


def torch_train_database_fault_once(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    """torch_train, but the first job to find no ``marker`` file creates it and raises a
    database fault, which ends its worker (the job goes back to the queue)."""
    from aiqc.exceptions import DatabaseUnreachableError

    try:
        os.close(os.open(hp["marker"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return torch_train(model, loser, optimizer, samples_train, samples_evaluate, **hp)
    raise DatabaseUnreachableError("the server went away (a test's fault)")


# --- sequences (Pipeline.Sequence.make): samples (N, timesteps, features), batch first ------------
_SEQUENCE_CLASSES: dict[str, type] = {}


def sequence_gru_class() -> type:
    """``SequenceGRU(features, hidden, outputs)``: a GRU over (N, timesteps, features), batch
    first, then a Linear layer on its last timestep's output. Defined once, when torch is first
    needed (importing tests/fns.py imports no torch)."""
    if "gru" not in _SEQUENCE_CLASSES:
        import torch.nn as nn

        class SequenceGRU(nn.Module):
            def __init__(self, features: int, hidden: int, outputs: int):
                super().__init__()
                self.gru = nn.GRU(features, hidden, batch_first=True)
                self.out = nn.Linear(hidden, outputs)

            def forward(self, x):
                steps, _ = self.gru(x)
                return self.out(steps[:, -1, :])

        _SEQUENCE_CLASSES["gru"] = SequenceGRU
    return _SEQUENCE_CLASSES["gru"]


def sequence_torch_build(features_shape, label_shape, **hp):
    timesteps, features = features_shape
    return sequence_gru_class()(features, hp["neuron_count"], label_shape[0])


def sequence_torch_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    import aiqc

    return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                          epoch_count=hp["epoch_count"], batch_size=hp["batch_size"])


def sequence_keras_build(features_shape, label_shape, **hp):
    import keras

    return keras.Sequential([
        keras.Input(shape=features_shape),  # (timesteps, features)
        keras.layers.GRU(hp["neuron_count"]),
        keras.layers.Dense(label_shape[0], activation="softmax"),
    ])


def sequence_keras_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    model.compile(loss=loser, optimizer=optimizer, metrics=["accuracy"])
    model.fit(samples_train["features"], samples_train["labels"],
              validation_data=(samples_evaluate["features"], samples_evaluate["labels"]),
              verbose=0, batch_size=hp["batch_size"], epochs=hp["epoch_count"])
    return model


SEQUENCE_FUNCTIONS = {"keras": (sequence_keras_build, sequence_keras_train),
                      "pytorch": (sequence_torch_build, sequence_torch_train)}


# --- prediction on images and sequences (tests/test_array_predict.py) ---------------------------------
def predict_cnn_build(features_shape, label_shape, **hp):
    """A tiny PyTorch CNN: ``features_shape`` is (channels, height, width), channels first."""
    import torch.nn as nn

    channels, height, width = features_shape
    return nn.Sequential(nn.Conv2d(channels, hp["neuron_count"], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(hp["neuron_count"] * (height // 2) * (width // 2), label_shape[0]))


def predict_gru_build(features_shape, label_shape, **hp):
    """A tiny PyTorch GRU over (timesteps, features), batch first; its last step is classified."""
    import torch

    class LastStepGRU(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(features_shape[1], hp["neuron_count"], batch_first=True)
            self.head = torch.nn.Linear(hp["neuron_count"], label_shape[0])

        def forward(self, x):
            out, _ = self.gru(x)
            return self.head(out[:, -1])

    return LastStepGRU()


def predict_torch_fn_predict(model, samples_predict):
    """A custom fn_predict: class indices and softmax probabilities from the raw outputs."""
    import torch

    model.eval()
    with torch.no_grad():
        probabilities = torch.softmax(model(samples_predict["features"]), dim=1)
    return probabilities.argmax(dim=1), probabilities


def predict_keras_cnn_build(features_shape, label_shape, **hp):
    """A tiny Keras CNN: ``features_shape`` is (height, width, channels), channels last."""
    import keras

    return keras.Sequential([
        keras.Input(shape=features_shape),
        keras.layers.Conv2D(hp["neuron_count"], 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(label_shape[0], activation="softmax"),
    ])
