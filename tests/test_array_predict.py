"""Predicting on images and sequences: ``job.predict`` on raw samples equals the stored test
predictions (arrays, one sample, grayscale images without their channel axis, a custom
``fn_predict``); bad samples are clear errors; ``job.export`` + ``aiqc.load_predictor`` predict
the same; YAML specs and ``aiqc predict`` for image and sequence datasets.

The jobs are built on the core (``ArrayDatasetPlan`` + ``aiqc.pipeline.store_arrays``), so the
prediction path is tested without the image and sequence readers; the YAML and CLI tests that
need those readers skip where they are missing."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, StandardScaler

import aiqc
from aiqc.cli import main
from aiqc.data.arrays import ArrayDatasetPlan, check_array
from aiqc.exceptions import ValidationError
from aiqc.orm import Job
from aiqc.pipeline import store_arrays
from aiqc.states import JobState

import fns
from fns import unbind_database

pytestmark = pytest.mark.backends

IMAGES = 360  # digits: enough to learn above chance in 2 epochs, small enough to train in a second
HP = {"neuron_count": [4], "epoch_count": [2], "batch_size": [32]}


# --- data and jobs, made once per module ------------------------------------------------------------
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The first :data:`IMAGES` of scikit-learn's digits as uint8 (N, 8, 8, 1) images, and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images[:IMAGES, ..., None] * 16).clip(0, 255).astype(np.uint8)
    return images, digits.target[:IMAGES]


def _signals(count: int = 90, timesteps: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(count, timesteps, 2) float32 sequences of three kinds (a sine, a ramp, noise), and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    t = np.linspace(0, 2 * np.pi, timesteps)
    shapes = {0: np.sin(t), 1: np.linspace(-1, 1, timesteps), 2: np.zeros(timesteps)}
    base = np.stack([shapes[k] for k in labels])
    samples = np.stack([base, -base], axis=-1) + rng.normal(0, 0.3, (count, timesteps, 2))
    return (samples * 10 + 5).astype(np.float32), np.array(["sine", "ramp", "flat"])[labels]


def _splitset(modality: str, samples: np.ndarray, labels: np.ndarray, channels: list[str], encoder: object,
              **split: object):
    plan = ArrayDatasetPlan(array=check_array(samples, modality, "samples"), df=pd.DataFrame({"label": labels}),
                            modality=modality, channels=channels, source="numpy")
    return store_arrays(plan, "label", label_encoder=dict(sklearn_preprocess=OneHotEncoder()),
                        feature_encoders=dict(sklearn_preprocess=encoder), random_state=0, **split)


def _queue(splitset, build, train=fns.torch_train, library="pytorch", **extra):
    queue = aiqc.Experiment.make(library=library, analysis_type="classification_multi", fn_build=build,
                                 fn_train=train, hyperparameters=HP, splitset_id=splitset.id, seed=0, **extra)
    queue.run_jobs(progress=False)
    return queue


def _train(folder: Path) -> dict:
    """A database with a CNN job on digit images (and one with a custom fn_predict) and a GRU job
    on sequences (fold 1 of 2: fold-scope encoders), all in PyTorch."""
    pytest.importorskip("torch")
    path = folder / "arrays.sqlite3"
    aiqc.setup(path)
    try:
        images, digits = _digits()
        splitset = _splitset("image", images, digits, ["gray"], MinMaxScaler(), size_validation=0.12)
        image = _queue(splitset, fns.predict_cnn_build).jobs.get()
        custom = _queue(splitset, fns.predict_cnn_build, fn_predict=fns.predict_torch_fn_predict).jobs.get()
        samples, kinds = _signals()
        splitset = _splitset("sequence", samples, kinds, ["a", "b"], StandardScaler(), fold_count=2)
        sequence = next(j for j in _queue(splitset, fns.predict_gru_build).jobs if j.fold_index == 1)
        assert {j.state for j in (image, custom, sequence)} == {JobState.COMPLETE}
        return {"path": path, "image": image.id, "custom": custom.id, "sequence": sequence.id,
                "images": images, "sequences": samples}
    finally:
        unbind_database()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    return _train(tmp_path_factory.mktemp("arrays"))


@pytest.fixture
def jobs(trained, monkeypatch) -> dict:
    """The trained database, bound: ``{"image": Job, "custom": Job, "sequence": Job, "images": ..., ...}``."""
    monkeypatch.delenv("AIQC_DB", raising=False)
    aiqc.setup(trained["path"])
    yield {k: Job.get_by_id(v) if k in ("image", "custom", "sequence") else v for k, v in trained.items()}
    unbind_database()


def _stored(job: Job, samples: np.ndarray) -> tuple[np.ndarray, pd.DataFrame]:
    """(the raw test samples of ``job``, its stored test predictions as job.predict returns them)."""
    rows, predictions, probabilities = job.predictions("test")
    classes = job.queue.experiment.splitset.class_names()
    expected = pd.DataFrame({"prediction": np.asarray(classes, dtype=object)[predictions],
                             **{f"probability_{c}": probabilities[:, i] for i, c in enumerate(classes)}})
    return samples[rows], expected


def _same(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(got, expected, check_exact=False, check_dtype=False, rtol=1e-5, atol=1e-6)


# --- predict equals the stored test predictions ------------------------------------------------------
@pytest.mark.parametrize("name", ["image", "custom", "sequence"])
def test_predict_on_raw_test_samples_equals_the_stored_test_predictions(jobs, name):
    job = jobs[name]
    samples, expected = _stored(job, jobs["sequences" if name == "sequence" else "images"])
    got = job.predict(samples)
    assert list(got.index) == list(range(len(samples)))
    assert list(got.columns) == list(expected.columns)
    _same(got, expected)
    assert got["prediction"].nunique() > 1  # a trained model, not a constant one


def test_one_sample_and_grayscale_images_without_their_channel_axis(jobs):
    job = jobs["image"]
    images, expected = _stored(job, jobs["images"])
    _same(job.predict(images[..., 0]), expected)  # (N, H, W)
    _same(job.predict(images[3]), expected.iloc[[3]].reset_index(drop=True))  # (H, W, 1)
    _same(job.predict(images[3, ..., 0]), expected.iloc[[3]].reset_index(drop=True))  # (H, W)
    # whole numbers given as floats are cast to the stored uint8
    _same(job.predict(images.astype(np.float64)), expected)
    sequences, expected = _stored(jobs["sequence"], jobs["sequences"])
    _same(jobs["sequence"].predict(sequences[5]), expected.iloc[[5]].reset_index(drop=True))  # (T, F)


def _nan_image(images: np.ndarray) -> np.ndarray:
    bad = images[:3].astype(np.float32)
    bad[1, 2, 2, 0] = np.nan
    return bad


@pytest.mark.parametrize("make, message", [
    (lambda x: x[:, :7], r"^samples: expected images of the shape the model was trained on, \(N, 8, 8, 1\); "
                         r"received an array of shape \(\d+, 7, 8, 1\)"),
    (lambda x: np.repeat(x, 3, axis=-1), r"^samples: expected images of the shape .*received an array of shape "
                                         r"\(\d+, 8, 8, 3\)"),
    (lambda x: x[:0], r"^samples: expected at least one image; received none"),
    (_nan_image, r"^samples: expected finite values; received NaN or inf in sample\(s\) \[1\]"),
    (lambda x: x > 0, r"^samples: expected an array of numbers; received 'dtype bool'"),
    (lambda x: x.astype(str), r"^samples: expected an array of numbers; received 'dtype <U"),
    (lambda x: x / 255.0, r"^samples: expected whole numbers of dtype uint8 \(between 0 and 255\) as in the training "
                          r"data; received dtype float64 with fractions in sample\(s\)"),
    (lambda x: x.astype(np.int64) * 4, r"^samples: expected values of dtype uint8 \(between 0 and 255\) .* out of "
                                       r"that range in sample\(s\)"),
])
def test_bad_images_are_clear_errors(jobs, make, message):
    with pytest.raises(ValidationError, match=message):
        jobs["image"].predict(make(jobs["images"][:6]))


def test_bad_sequences_are_clear_errors(jobs):
    job, sequences = jobs["sequence"], jobs["sequences"][:4]
    with pytest.raises(ValidationError, match=r"^samples: expected sequences of the shape the model was trained on, "
                                              r"\(N, 12, 2\); received an array of shape \(4, 13, 2\)"):
        job.predict(np.concatenate([sequences, sequences[:, :1]], axis=1))
    bad = sequences.copy()
    bad[2, 0, 1] = np.inf
    with pytest.raises(ValidationError, match=r"^samples: expected finite values; .*\[2\]"):
        job.predict(bad)
    # float32 sequences take any numbers
    _same(job.predict(sequences.astype(np.float64)), job.predict(sequences))


def test_an_array_predictor_says_what_it_takes(jobs):
    from aiqc.inference import predictor_for

    predictor = predictor_for(jobs["image"])
    assert predictor.modality == "image" and predictor.input.sample_shape == (8, 8, 1)
    assert predictor.input.dtype == "uint8" and predictor.input.channels == ["gray"]
    assert repr(predictor) == (f"<Predictor job {jobs['image'].id}: pytorch classification_multi, images of shape "
                               "(8, 8, 1) -> 'label' (10 classes)>")


# --- export ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["image", "custom", "sequence"])
def test_an_exported_array_predictor_predicts_as_the_job(jobs, tmp_path, name):
    job = jobs[name]
    samples = jobs["sequences" if name == "sequence" else "images"][:40]
    target = job.export(tmp_path / f"{name}.aiqc")
    with zipfile.ZipFile(target) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    features = manifest["features"]
    assert manifest["format_version"] == 2  # an aiqc that reads tables only refuses it as newer, not as damaged
    modality, shape, channels = (("sequence", [12, 2], ["a", "b"]) if name == "sequence"
                                 else ("image", [8, 8, 1], ["gray"]))
    assert (features["modality"], features["sample_shape"], features["channels"]) == (modality, shape, channels)
    assert features["dtype"] == ("float32" if name == "sequence" else "uint8") and features["settings"] == {}
    assert [e["columns"] for e in features["encoders"]] == [channels]
    # the model's input shape in PyTorch's layout: images channels first
    assert manifest["input_shapes"]["features"] == ([12, 2] if name == "sequence" else [1, 8, 8])
    loaded = aiqc.load_predictor(target)
    assert loaded.modality == modality and loaded.job_id == job.id
    _same(loaded.predict(samples), job.predict(samples))
    if name == "image":
        _same(loaded.predict(samples[0, ..., 0]), job.predict(samples[:1]))
        with pytest.raises(ValidationError, match=r"^samples: expected images of the shape"):
            loaded.predict(samples[:, :4])


def test_a_manifest_of_an_unknown_modality_asks_for_an_upgrade(jobs, tmp_path):
    target = jobs["image"].export(tmp_path / "image.aiqc")
    altered = tmp_path / "audio.aiqc"
    with zipfile.ZipFile(target) as old, zipfile.ZipFile(altered, "w") as new:
        for name in old.namelist():
            blob = old.read(name)
            if name == "manifest.json":
                manifest = json.loads(blob)
                manifest["features"]["modality"] = "audio"
                blob = json.dumps(manifest).encode()
            new.writestr(name, blob)
    with pytest.raises(ValidationError, match=r"of a kind this aiqc reads \(tabular, image, sequence\); .*modality "
                                              r"'audio'.*Upgrade aiqc"):
        aiqc.load_predictor(altered)


def test_a_keras_cnn_predicts_and_exports_as_stored(db, tmp_path):
    pytest.importorskip("keras")
    images, digits = _digits()
    splitset = _splitset("image", images, digits, ["gray"], MinMaxScaler(), size_validation=0.12)
    job = _queue(splitset, fns.predict_keras_cnn_build, fns.keras_train, library="keras").jobs.get()
    samples, expected = _stored(job, images)
    _same(job.predict(samples), expected)
    _same(job.predict(samples[..., 0]), expected)
    target = job.export(tmp_path / "keras.aiqc")
    with zipfile.ZipFile(target) as archive:
        assert json.loads(archive.read("manifest.json"))["input_shapes"]["features"] == [8, 8, 1]  # channels last
    _same(aiqc.load_predictor(target).predict(samples), expected)


# --- YAML specs and the CLI, through the image and sequence readers -----------------------------------
def _needs(modality: str) -> None:
    from aiqc.pipeline import Pipeline

    if not hasattr(Pipeline, modality):
        pytest.skip(f"Pipeline.{modality} is not there yet")


MODELS = '''
def build(features_shape, label_shape, **hp):
    import math

    import torch.nn as nn
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(features_shape), label_shape[0]))


def train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    import aiqc
    return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate, epoch_count=1, batch_size=64)
'''


def _spec(folder: Path, data: dict) -> Path:
    import yaml

    (folder / "array_models.py").write_text(MODELS)
    spec = {"data": {"label_column": "label", "label_encoder": {"class": "sklearn.preprocessing.OneHotEncoder"},
                     "feature_encoders": [{"class": "sklearn.preprocessing.MinMaxScaler"}], "random_state": 0,
                     "size_validation": 0.15, **data},
            "experiment": {"library": "pytorch", "analysis_type": "classification_multi",
                           "fn_build": "array_models:build", "fn_train": "array_models:train", "seed": 0}}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _write_pngs(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    from PIL import Image

    for i, (pixels, label) in enumerate(zip(images, labels)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[..., 0]).save(folder / str(label) / f"{i:03d}.png")
    return folder


def _long(samples: np.ndarray, labels: np.ndarray, first: int = 0) -> pd.DataFrame:
    """(N, T, 2) sequences as a long frame: sequence_id (s<first>, ...), step, a, b, label."""
    n, t, _ = samples.shape
    ids = [f"s{i:03d}" for i in range(first, first + n)]
    return pd.DataFrame({"sequence_id": np.repeat(ids, t), "step": np.tile(np.arange(t), n),
                         "a": samples[..., 0].ravel(), "b": samples[..., 1].ravel(), "label": np.repeat(labels, t)})


def test_a_yaml_spec_of_an_image_folder_builds_and_predicts_from_files(db, tmp_path, capsys):
    _needs("Image")
    pytest.importorskip("PIL")
    images, digits = _digits()
    folder = _write_pngs(tmp_path / "digits", images[:120], digits[:120])
    queue = aiqc.Experiment.from_config(_spec(tmp_path, {"modality": "image", "folder": "digits", "color_mode": "L"}))
    splitset = queue.experiment.splitset
    dataset = splitset.feature.dataset
    assert (dataset.modality, dataset.sample_shape, dataset.settings) == ("image", [8, 8, 1], {"color_mode": "L"})
    assert [e.class_path for e in splitset.encoders_for(side="feature")] == ["sklearn.preprocessing._data.MinMaxScaler"]
    queue.run_jobs(progress=False)
    job = queue.jobs.get()
    rows = splitset.indices("test")
    files = [folder / name for name in dataset.to_pandas(["file"], rows)["file"]]
    _same(job.predict([str(f) for f in files]), job.predict(dataset.to_array(rows)))
    # aiqc predict on a folder: a file column first, in the order the folder is read
    target = job.export(tmp_path / "digits.aiqc")
    assert main(["predict", str(target), str(folder)]) == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"prediction": str})
    expected = job.predict(str(folder))
    assert out.columns[0] == "file" and len(out) == 120
    assert out["file"].tolist() == sorted(f"{d}/{i:03d}.png" for i, d in enumerate(digits[:120]))
    assert out["prediction"].tolist() == expected["prediction"].tolist()
    assert main(["predict", str(target), str(files[0])]) == 0
    one = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"prediction": str})
    assert one["file"].tolist() == [str(files[0])] and one["prediction"].tolist() == \
        job.predict(str(files[0]))["prediction"].tolist()


def test_a_yaml_spec_of_a_long_sequence_file_builds_and_predicts_from_a_frame(db, tmp_path, capsys):
    _needs("Sequence")
    samples, kinds = _signals()
    _long(samples, kinds).to_csv(tmp_path / "signals.csv", index=False)
    queue = aiqc.Experiment.from_config(_spec(tmp_path, {
        "modality": "sequence", "path": "signals.csv", "sequence_column": "sequence_id", "order_column": "step",
        "feature_columns": ["a", "b"], "feature_encoders": [{"class": "sklearn.preprocessing.StandardScaler"}]}))
    dataset = queue.experiment.splitset.feature.dataset
    assert (dataset.modality, dataset.sample_shape, dataset.channels) == ("sequence", [12, 2], ["a", "b"])
    queue.run_jobs(progress=False)
    job = queue.jobs.get()
    _same(job.predict(_long(samples[:10], kinds[:10])), job.predict(samples[:10]))
    target = job.export(tmp_path / "signals.aiqc")
    new = _long(samples[20:26], kinds[20:26], first=20).sample(frac=1, random_state=0)  # rows in any order
    new.drop(columns="label").to_parquet(tmp_path / "new.parquet")
    assert main(["predict", str(target), str(tmp_path / "new.parquet")]) == 0
    out = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"prediction": str})
    assert out.columns[0] == "sequence_id"
    by_id = dict(zip([f"s{i:03d}" for i in range(20, 26)], job.predict(samples[20:26])["prediction"]))
    assert dict(zip(out["sequence_id"], out["prediction"])) == by_id


@pytest.mark.parametrize("data, message", [
    ({"modality": "video", "path": "x.csv"}, r"^data.modality: expected one of \['tabular', 'image', 'sequence'\]"),
    ({"modality": "image", "folder": "x", "sequence_column": "id"},
     r"^data.sequence_column: expected a key among .* \(modality 'image'; 'sequence_column' is a key of modality "
     r"'sequence'\); received unknown 'sequence_column'"),
    ({"modality": "sequence", "path": "x.csv", "resize": [8, 8]}, r"^data.resize: expected a key among"),
    ({"modality": "image", "folder": "x", "path": "y"}, r"^data: expected exactly one of 'datum' \(a bundled set\), 'folder' or 'path'; received 'folder' and 'path'\."),
    ({"modality": "image", "folder": "x", "feature_encoders": [{"class": "sklearn.preprocessing.MinMaxScaler",
                                                                "dtypes": ["float64"]}]},
     r"^data.feature_encoders\[0\].dtypes: expected keys among \['class', 'params'\]"),
    ({"path": "x.csv", "color_mode": "L"},
     r"^data.color_mode: expected a key among .*\(modality 'tabular'; 'color_mode' is a key of modality 'image'\)"),
])
def test_a_yaml_data_section_of_images_or_sequences_is_checked_before_anything_is_stored(db, row_counts, tmp_path,
                                                                                        data, message):
    before = row_counts()
    with pytest.raises(ValidationError, match=message):
        aiqc.Experiment.from_config(_spec(tmp_path, data))
    assert row_counts() == before


@pytest.mark.parametrize("modality, name, maker", [("sequence", "signals.parquet", "Sequence"),
                                                  ("image", "digits", "Image")])
def test_a_yaml_data_section_names_a_bundled_image_or_sequence_set(tmp_path, monkeypatch, modality, name, maker):
    from aiqc import datum, spec

    if name not in datum.GENERATED:
        pytest.skip(f"the datum {name!r} is not there yet")
    monkeypatch.setenv("AIQC_DATUMS", str(tmp_path / "datums"))
    _spec(tmp_path, {})
    prepared = spec.prepare({"data": {"modality": modality, "datum": name, "label_column": "label",
                                      "feature_encoders": [{"class": "sklearn.preprocessing.StandardScaler"}]},
                             "experiment": {"library": "pytorch", "analysis_type": "classification_multi",
                                            "fn_build": "array_models:build", "fn_train": "array_models:train"}},
                            base=tmp_path)
    assert prepared["source"] == datum.get_path(name) and Path(prepared["source"]).exists()
    assert prepared["maker"] == maker and "modality" not in prepared["data"]
    assert isinstance(prepared["data"]["feature_encoders"][0]["sklearn_preprocess"], StandardScaler)


def test_a_queue_of_images_is_not_exported_as_a_spec(jobs, tmp_path):
    with pytest.raises(ValidationError, match=r"^queue: expected a queue of a table's splitset to export as a spec; "
                                              r"queue \d+ holds images"):
        jobs["image"].queue.to_config(tmp_path / "image.yaml")
    assert not (tmp_path / "image.yaml").exists()
