"""``Pipeline.Image.make``: folders of PNG/JPEG files, lists of files and numpy arrays stored as
image datasets; their splits, encoders, errors, recorded settings, the digits datum, the
reader of image files for predict, and CNN queues in PyTorch and Keras."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import aiqc
from aiqc import datum
from aiqc.data import images
from aiqc.data.arrays import samples_for_prediction
from aiqc.exceptions import DataReusedNotice, MissingExtraError, ValidationError
from aiqc.orm import Dataset

from fns import image_keras_build, image_keras_train, image_torch_build, image_torch_train

PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402


def _save(path: Path, pixels: np.ndarray, format: str | None = None) -> Path:
    """Write ``pixels`` (H, W) or (H, W, C) uint8 as an image file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=format)
    return path


def _decoded(path: Path) -> np.ndarray:
    """A file's pixels as Pillow decodes them, with a channel axis."""
    with Image.open(path) as image:
        array = np.asarray(image)
    return array if array.ndim == 3 else array[..., None]


def _folder(root: Path, classes: int = 3, per_class: int = 8, shape: tuple = (6, 5, 3), seed: int = 0,
            high: int = 256) -> Path:
    """``root/<label>/<i>.png``: ``per_class`` random images of ``shape`` for each of ``classes`` labels."""
    rng = np.random.default_rng(seed)
    for label in range(classes):
        for i in range(per_class):
            pixels = rng.integers(0, high, size=shape, dtype=np.uint8)
            _save(root / f"class_{label}" / f"{i:02d}.png", pixels.squeeze(-1) if shape[-1] == 1 else pixels)
    return root


@pytest.fixture
def folder(tmp_path) -> Path:
    return _folder(tmp_path / "images")


@pytest.fixture
def digits(tmp_path_factory, monkeypatch) -> str:
    monkeypatch.setenv("AIQC_DATUMS", str(tmp_path_factory.getbasetemp() / "datums"))
    return datum.get_path("digits")


# --- sources ------------------------------------------------------------------------------------
def test_a_folder_round_trips_to_the_decoded_files(db, folder):
    splitset = aiqc.Pipeline.Image.make(folder, size_validation=0.2, random_state=1)
    dataset = splitset.label.dataset
    table = dataset.to_pandas()
    assert list(table.columns) == ["file", "label"]
    assert list(table["file"]) == sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    assert list(table["label"]) == [name.split("/")[0] for name in table["file"]]
    stored = dataset.to_array()
    expected = np.stack([_decoded(folder / name) for name in table["file"]])
    assert stored.dtype == np.uint8 and stored.shape == (24, 6, 5, 3)
    np.testing.assert_array_equal(stored, expected)
    assert (dataset.modality, dataset.sample_shape, dataset.sample_dtype) == ("image", [6, 5, 3], "uint8")
    assert dataset.channels == ["red", "green", "blue"] and dataset.settings is None
    # no encoder: the model sees the pixel values, as float32 of the same shape
    train = splitset.samples("train")["features"]
    assert train.dtype == np.float32
    np.testing.assert_array_equal(train, expected[splitset.indices("train")])


@pytest.mark.parametrize(("shape", "channels"), [((4, 4, 1), ["gray"]),
                                                 ((4, 4, 4), ["red", "green", "blue", "alpha"])])
def test_grayscale_keeps_a_channel_axis_and_alpha_is_a_channel(db, tmp_path, shape, channels):
    root = _folder(tmp_path / "images", shape=shape)
    dataset = aiqc.Pipeline.Image.make(root, random_state=0).label.dataset
    assert dataset.sample_shape == list(shape) and dataset.channels == channels
    first = root / dataset.to_pandas()["file"][0]
    np.testing.assert_array_equal(dataset.to_array([0])[0], _decoded(first))


def test_jpeg_files_are_read(db, tmp_path):
    rng = np.random.default_rng(3)
    for label in ("a", "b"):
        for i in range(4):
            _save(tmp_path / "jpg" / label / f"{i}.JPG", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), "JPEG")
    dataset = aiqc.Pipeline.Image.make(tmp_path / "jpg", size_test=0.25, random_state=0).label.dataset
    expected = np.stack([_decoded(tmp_path / "jpg" / name) for name in dataset.to_pandas()["file"]])
    np.testing.assert_array_equal(dataset.to_array(), expected)


@pytest.mark.parametrize("as_csv", [False, True])
def test_labels_from_a_table_or_a_csv_beside_the_images(db, tmp_path, as_csv):
    root = tmp_path / "flat"
    rng = np.random.default_rng(0)
    for i in range(12):
        _save(root / f"img_{i:02d}.png", rng.integers(0, 256, (3, 3), dtype=np.uint8))
    table = pd.DataFrame({"name": [f"img_{i:02d}.png" for i in reversed(range(12))],
                          "digit": [i % 3 for i in reversed(range(12))]})
    labels = table
    if as_csv:
        labels = root / "labels.csv"  # inside the folder: skipped when listing the images
        table.to_csv(labels, index=False)
    splitset = aiqc.Pipeline.Image.make(root, label_column="digit", labels=labels, file_column="name",
                                        size_test=0.25, random_state=0)
    stored = splitset.label.dataset.to_pandas()
    assert list(stored.columns) == ["name", "digit"]
    assert list(stored["name"]) == [f"img_{i:02d}.png" for i in range(12)]  # sorted, whatever the table's order
    assert list(stored["digit"]) == [i % 3 for i in range(12)]
    assert splitset.label.classes == [0, 1, 2]


def test_a_list_of_files_keeps_its_order_with_one_label_each(db, folder):
    paths = sorted(folder.rglob("*.png"), key=lambda p: p.name, reverse=True)
    labels = [p.parent.name for p in paths]
    dataset = aiqc.Pipeline.Image.make([str(p) for p in paths], labels=labels, random_state=0).label.dataset
    table = dataset.to_pandas()
    assert list(table["file"]) == [p.relative_to(folder).as_posix() for p in paths]
    assert list(table["label"]) == labels
    np.testing.assert_array_equal(dataset.to_array(), np.stack([_decoded(p) for p in paths]))
    # or with a table naming them as given
    mapping = pd.DataFrame({"file": [str(p) for p in paths], "label": labels})
    with pytest.warns(DataReusedNotice):  # the same images and table: stored once
        again = aiqc.Pipeline.Image.make(paths, labels=mapping, random_state=0).label.dataset
    assert again.id == dataset.id


def test_a_numpy_array_with_labels(db):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (20, 5, 5), dtype=np.uint8)
    labels = np.repeat(["x", "y"], 10)
    dataset = aiqc.Pipeline.Image.make(pixels, labels=labels, random_state=0).label.dataset
    assert dataset.sample_shape == [5, 5, 1] and dataset.channels == ["gray"] and dataset.source == "numpy.ndarray"
    np.testing.assert_array_equal(dataset.to_array(), pixels[..., None])
    table = dataset.to_pandas()
    assert table["file"].isna().all() and list(table["label"]) == list(labels)
    rgb = rng.random((20, 4, 4, 3)).astype(np.float32)
    frame = pd.DataFrame({"kind": labels})
    stored = aiqc.Pipeline.Image.make(rgb, label_column="kind", labels=frame, random_state=0).label.dataset
    assert stored.channels == ["red", "green", "blue"] and stored.sample_dtype == "float32"
    np.testing.assert_array_equal(stored.to_array(), rgb)


# --- splits and encoders ------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::aiqc.exceptions.DataReusedNotice")
def test_splits_are_stratified_disjoint_and_reproduced_as_for_tables(db, digits):
    make = dict(size_test=0.2, size_validation=0.1)
    a = aiqc.Pipeline.Image.make(digits, random_state=7, **make)
    b = aiqc.Pipeline.Image.make(digits, random_state=7, **make)
    c = aiqc.Pipeline.Image.make(digits, random_state=8, **make)
    labels = a.label.dataset.to_pandas()["label"]
    parts = [a.indices(split) for split in ("train", "validation", "test")]
    assert sorted(np.concatenate(parts).tolist()) == list(range(1797))
    shares = labels.value_counts(normalize=True)
    for rows in parts:
        counts = labels.iloc[rows].value_counts()
        assert ((counts - shares * len(rows)).abs() <= 1.5).all(), counts
    for split in ("train", "validation", "test"):
        assert np.array_equal(a.indices(split), b.indices(split))
    assert not np.array_equal(a.indices("test"), c.indices("test"))
    table = aiqc.Pipeline.Tabular.make(labels.to_frame().assign(x=0.0), label_column="label",
                                       feature_cols_excluded="label", random_state=7, **make)
    for split in ("train", "validation", "test"):
        assert np.array_equal(a.indices(split), table.indices(split))


def test_folds_are_disjoint_and_cover_the_training_images(db, digits):
    splitset = aiqc.Pipeline.Image.make(digits, fold_count=3, random_state=0)
    test = set(splitset.indices("test").tolist())
    held_out = [set(splitset.indices("validation", fold).tolist()) for fold in range(3)]
    assert all(not (a & b) for i, a in enumerate(held_out) for b in held_out[i + 1:])
    assert set().union(*held_out) == set(range(1797)) - test
    for fold in range(3):
        assert not set(splitset.indices("train", fold).tolist()) & held_out[fold]


def test_the_scaler_is_fit_on_training_images_only(db, tmp_path):
    from sklearn.preprocessing import MinMaxScaler

    root = _folder(tmp_path / "dim", classes=2, per_class=10, shape=(4, 4, 1), high=101)  # values 0..100
    first = aiqc.Pipeline.Image.make(root, random_state=4)
    planted = first.label.dataset.to_pandas()["file"][first.indices("test")[0]]
    _save(root / planted, np.full((4, 4), 255, dtype=np.uint8))  # a very bright test image
    scaler = dict(sklearn_preprocess=MinMaxScaler())
    splitset = aiqc.Pipeline.Image.make(root, feature_encoders=scaler, random_state=4)
    assert np.array_equal(splitset.indices("test"), first.indices("test"))
    stored = splitset.label.dataset.to_array()
    assert stored.max() == 255
    fitted = splitset.encoders_for(side="feature")[0].fitted
    assert fitted.data_max_.tolist() == [stored[splitset.indices("train")].max()]
    assert fitted.data_max_[0] <= 100
    assert splitset.samples("train")["features"].max() == pytest.approx(1.0)
    assert splitset.samples("test")["features"].max() > 2  # the planted image, scaled by the training range


def test_standard_scaler_standardises_each_channel_on_training_images(db, folder):
    from sklearn.preprocessing import StandardScaler

    splitset = aiqc.Pipeline.Image.make(folder, feature_encoders=dict(sklearn_preprocess=StandardScaler()),
                                        random_state=2)
    train = splitset.label.dataset.to_array(splitset.indices("train")).astype(np.float64)
    fitted = splitset.encoders_for(side="feature")[0].fitted
    np.testing.assert_allclose(fitted.mean_, train.reshape(-1, 3).mean(axis=0))
    np.testing.assert_allclose(fitted.scale_, train.reshape(-1, 3).std(axis=0))
    encoded = splitset.samples("train")["features"]
    np.testing.assert_allclose(encoded.reshape(-1, 3).mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(encoded.reshape(-1, 3).std(axis=0), 1, atol=1e-4)


# --- settings ------------------------------------------------------------------------------------
def test_resize_and_color_mode_are_applied_and_recorded(db, tmp_path):
    root = tmp_path / "mixed"
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        for i, shape in enumerate([(6, 6, 3), (10, 8, 3), (6, 6), (7, 9)]):
            _save(root / label / f"{i}.png", rng.integers(0, 256, shape, dtype=np.uint8))
    splitset = aiqc.Pipeline.Image.make(root, resize=(5, 4), color_mode="L", size_test=0.25, random_state=0)
    dataset = splitset.label.dataset
    assert dataset.settings == {"resize": [5, 4], "color_mode": "L"}
    assert dataset.sample_shape == [5, 4, 1] and dataset.channels == ["gray"]
    name = dataset.to_pandas()["file"][1]
    with Image.open(root / name) as image:
        expected = np.asarray(image.convert("L").resize((4, 5), resample=Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(dataset.to_array([1])[0, ..., 0], expected)
    only_rgb = aiqc.Pipeline.Image.make(root, resize=[6, 6], color_mode="RGB", size_test=0.25, random_state=0)
    assert only_rgb.label.dataset.settings == {"resize": [6, 6], "color_mode": "RGB"}
    assert only_rgb.label.dataset.sample_shape == [6, 6, 3]


def test_palette_and_bilevel_images_are_stored_as_rgb_and_gray(db, tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):
        rgb = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        rgb.convert("P").save(_mkdir(tmp_path / "p" / str(i % 2)) / f"{i}.png")
        rgb.convert("1").save(_mkdir(tmp_path / "bw" / str(i % 2)) / f"{i}.png")
    palette = aiqc.Pipeline.Image.make(tmp_path / "p", size_test=0.5, random_state=0).label.dataset
    assert palette.channels == ["red", "green", "blue"]
    name = palette.to_pandas()["file"][0]
    with Image.open(tmp_path / "p" / name) as image:
        np.testing.assert_array_equal(palette.to_array([0])[0], np.asarray(image.convert("RGB")))
    bilevel = aiqc.Pipeline.Image.make(tmp_path / "bw", size_test=0.5, random_state=0).label.dataset
    assert bilevel.channels == ["gray"] and set(np.unique(bilevel.to_array()).tolist()) <= {0, 255}


def test_sixteen_bit_grayscale_keeps_its_dtype(db, tmp_path):
    rng = np.random.default_rng(0)
    for i in range(6):
        _save(tmp_path / "deep" / str(i % 2) / f"{i}.png", rng.integers(0, 65536, (3, 4), dtype=np.uint16))
    dataset = aiqc.Pipeline.Image.make(tmp_path / "deep", size_test=0.34, random_state=0).label.dataset
    assert (dataset.sample_dtype, dataset.sample_shape, dataset.channels) == ("uint16", [3, 4, 1], ["gray"])
    expected = np.stack([_decoded(tmp_path / "deep" / name) for name in dataset.to_pandas()["file"]])
    np.testing.assert_array_equal(dataset.to_array(), expected)
    assert dataset.to_array().max() > 255


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- errors: clear, and nothing written -----------------------------------------------------------
def _mixed_sizes(root: Path) -> dict:
    _save(root / "class_1" / "wide.png", np.zeros((6, 9, 3), dtype=np.uint8))
    return {}


def _mixed_modes(root: Path) -> dict:
    _save(root / "class_2" / "gray.png", np.zeros((6, 5), dtype=np.uint8))
    return {}


def _corrupt(root: Path) -> dict:
    (root / "class_0" / "broken.png").write_bytes(b"not a png at all")
    return {}


def _truncated(root: Path) -> dict:
    path = root / "class_0" / "cut.png"
    _save(path, np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:60])
    return {}


def _table(root: Path) -> pd.DataFrame:
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    return pd.DataFrame({"file": names, "label": [n.split("/")[0] for n in names]})


def _unknown_name(root: Path) -> dict:
    table = _table(root)
    table.loc[0, "file"] = "class_0/missing.png"
    return dict(labels=pd.concat([table, _table(root).iloc[:1]]))


def _label_missing(root: Path) -> dict:
    return dict(labels=_table(root).iloc[1:])


def _label_blank(root: Path) -> dict:
    table = _table(root)
    table.loc[3, "label"] = None
    return dict(labels=table)


def _other_file(root: Path) -> dict:
    (root / "class_1" / "notes.txt").write_text("hello")
    return {}


def _top_level_image(root: Path) -> dict:
    _save(root / "loose.png", np.zeros((6, 5, 3), dtype=np.uint8))
    return {}


BAD_FOLDERS = {
    "mixed sizes": (_mixed_sizes, r"source: expected images of one size; received 24 file\(s\) of 6x5 \(height x "
                                  r"width\), and 1 file\(s\) of 6x9 \(height x width\): 'class_1/wide.png'\. "
                                  r"Pass resize=\(height, width\)"),
    "mixed modes": (_mixed_modes, r"source: expected images of one color mode .*; received 24 file\(s\) of RGB "
                                  r"\(3 channel\(s\)\), and 1 file\(s\) of L \(1 channel\(s\)\): "
                                  r"'class_2/gray.png'\. Pass color_mode="),
    "corrupt file": (_corrupt, r"source: expected readable PNG or JPEG images; received 1 file\(s\) Pillow cannot "
                               r"read: 'class_0/broken.png'"),
    "truncated file": (_truncated, r"source: expected readable .* 'class_0/cut.png'"),
    "unknown label file name": (_unknown_name, r"labels: expected file names of the images .* 1 unknown "
                                               r"name\(s\): 'class_0/missing.png'"),
    "image without a label row": (_label_missing, r"labels: expected a label for every image; received 1 image\(s\) "
                                                  r"without a row .*'class_0/00.png'"),
    "image with a blank label": (_label_blank, r"labels: expected a label for every image; received 1 image\(s\) "
                                               r"whose label \('label'\) is missing: 'class_0/03.png'"),
    "non-image file": (_other_file, r"source: expected a folder holding only PNG or JPEG images.*1 other "
                                    r"file\(s\).*'class_1/notes.txt'"),
    "image outside a label folder": (_top_level_image, r"labels: expected each image in a subfolder .* "
                                                       r"'loose.png'"),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_a_bad_folder_is_a_clear_error_and_writes_nothing(db, row_counts, tmp_path, case):
    aiqc.Pipeline.Image.make(_folder(tmp_path / "good"), random_state=0)
    before = row_counts()
    root = _folder(tmp_path / "bad")
    spoil, message = BAD_FOLDERS[case]
    kwargs = spoil(root)
    with pytest.raises(ValidationError, match=message):
        aiqc.Pipeline.Image.make(root, random_state=0, **kwargs)
    assert row_counts() == before


def test_many_offending_files_are_listed_up_to_ten_and_counted(db, row_counts, tmp_path):
    root = _folder(tmp_path / "images")
    for i in range(13):
        _save(root / "class_0" / f"big_{i:02d}.png", np.zeros((7, 7, 3), dtype=np.uint8))
    before = row_counts()
    with pytest.raises(ValidationError, match=r"24 file\(s\) of 6x5 \(height x width\), and 13 file\(s\) of 7x7 "
                                              r"\(height x width\): 'class_0/big_00.png'.*'class_0/big_09.png' "
                                              r"\.\.\. and 3 more\.") as error:
        aiqc.Pipeline.Image.make(root)
    assert "big_10" not in str(error.value)
    assert row_counts() == before


BAD_ARGUMENTS = {
    "empty folder": (lambda tmp: _mkdir(tmp / "empty"), {}, r"source: expected a folder holding PNG or JPEG images; "
                                                          r"received .*which holds none"),
    "no such folder": (lambda tmp: tmp / "nowhere", {}, r"source: expected an existing folder .*no such folder"),
    "only hidden files": (lambda tmp: _save(tmp / "h" / "a" / ".x.png", np.zeros((2, 2), np.uint8)).parent.parent,
                          {}, r"which holds none"),
    "array without labels": (lambda tmp: np.zeros((4, 3, 3), np.uint8), {}, r"labels: expected one label per image"),
    "labels of another length": (lambda tmp: np.zeros((4, 3, 3), np.uint8), dict(labels=[0, 1, 0]),
                                 r"labels: expected 4 labels, one per image; received 3"),
    "2-D array": (lambda tmp: np.zeros((4, 3), np.uint8), dict(labels=[0, 1, 0, 1]),
                  r"source: expected a 4-D array shaped \(samples, height, width, channels\)"),
    "NaN pixel": (lambda tmp: np.full((4, 2, 2), np.nan), dict(labels=[0, 1, 0, 1]),
                  r"source: expected finite values"),
    "resize on an array": (lambda tmp: np.zeros((4, 3, 3), np.uint8), dict(labels=[0, 1, 0, 1], resize=(2, 2)),
                           r"resize: expected None with a numpy array"),
    "a bad resize": (lambda tmp: _folder(tmp / "f"), dict(resize=(0, 3)),
                     r"resize: expected None or \(height, width\), two positive integers; received \(0, 3\)"),
    "a bad color mode": (lambda tmp: _folder(tmp / "f"), dict(color_mode="CMYK"),
                         r"color_mode: expected None or one of \['L', 'RGB', 'RGBA'\]"),
    "a source of another kind": (lambda tmp: {"a": 1}, {}, r"source: expected a folder of PNG/JPEG images, a list"),
    "a list without labels": (lambda tmp: sorted(str(p) for p in _folder(tmp / "f").rglob("*.png")), {},
                              r"labels: expected the labels of the image files"),
    "a missing file in a list": (lambda tmp: [str(tmp / "a.png"), str(tmp / "b.png")], dict(labels=[0, 1]),
                                 r"source: expected existing image files; received 2 path\(s\)"),
    "a file twice in a list": (lambda tmp: [str(p) for p in sorted(_folder(tmp / "f").rglob("*.png"))[:2]] * 2,
                               dict(labels=[0, 1, 0, 1]), r"source: expected each image once"),
    "an unknown labels column": (lambda tmp: _folder(tmp / "f"), dict(labels=pd.DataFrame({"file": ["x"]}),
                                                                      label_column="kind"),
                                 r"label_column: expected a column of the labels table \['file'\]; received 'kind'"),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments_are_clear_errors_and_write_nothing(db, row_counts, tmp_path, case):
    make_source, kwargs, message = BAD_ARGUMENTS[case]
    source = make_source(tmp_path)
    before = row_counts()
    with pytest.raises(ValidationError, match=message):
        aiqc.Pipeline.Image.make(source, **kwargs)
    assert row_counts() == before


def test_a_missing_pillow_names_the_extra(folder, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'aiqc\[image\]'"):
        images.plan_images(folder)


# --- reuse and the digits datum -----------------------------------------------------------------
def test_the_same_folder_twice_is_stored_once(db, folder):
    first = aiqc.Pipeline.Image.make(folder, random_state=0)
    with pytest.warns(DataReusedNotice, match=rf"already stored as dataset {first.label.dataset_id}"):
        second = aiqc.Pipeline.Image.make(str(folder), size_test=0.3, random_state=1)
    assert second.label.dataset_id == first.label.dataset_id and Dataset.select().count() == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataReusedNotice)
        resized = aiqc.Pipeline.Image.make(folder, resize=(3, 3), random_state=0)
    assert resized.label.dataset_id != first.label.dataset_id and Dataset.select().count() == 2


def test_digits_is_listed_and_written_as_labelled_png_files(digits):
    from sklearn.datasets import load_digits

    listed = datum.list_datums().set_index("name").loc["digits"]
    assert (listed["modality"], listed["rows"], listed["label"]) == ("image", 1797, "label")
    assert listed["analysis_type"] == "classification_multi"
    table = datum.to_pandas("digits")
    assert list(table.columns) == ["file", "label"] and len(table) == 1797
    assert sorted(table["label"].unique()) == [str(d) for d in range(10)]
    reference = load_digits()
    index = 17
    name = f"{reference.target[index]}/{index:04d}.png"
    assert name in set(table["file"])
    pixels = _decoded(Path(digits) / name)[..., 0]
    np.testing.assert_array_equal(pixels, np.round(reference.images[index] * 255 / 16).astype(np.uint8))
    assert pixels.max() == 255 or reference.images[index].max() < 16


# --- reading image files for predict ------------------------------------------------------------
def test_read_for_prediction_reads_files_as_they_were_stored(db, tmp_path):
    root = tmp_path / "mixed"
    rng = np.random.default_rng(5)
    for label in ("a", "b"):
        for i, shape in enumerate([(6, 6, 3), (9, 7), (8, 8, 4)]):
            _save(root / label / f"{i}.png", rng.integers(0, 256, shape, dtype=np.uint8))
    dataset = aiqc.Pipeline.Image.make(root, resize=(4, 4), color_mode="RGB", size_test=0.5,
                                       random_state=0).label.dataset
    shape, settings = tuple(dataset.sample_shape), dataset.settings
    names = list(dataset.to_pandas()["file"])
    stored = dataset.to_array()
    np.testing.assert_array_equal(images.read_for_prediction(str(root), shape, settings, "samples"), stored)
    one = images.read_for_prediction(root / names[2], shape, settings, "samples")
    np.testing.assert_array_equal(one, stored[2:3])
    listed = images.read_for_prediction([root / names[4], str(root / names[0])], shape, settings, "samples")
    np.testing.assert_array_equal(listed, stored[[4, 0]])
    with Image.open(root / names[1]) as image:
        image.load()
        from_pil = images.read_for_prediction([image], shape, settings, "samples")
    np.testing.assert_array_equal(from_pil, stored[1:2])
    # through the modalities' contract used by predict
    np.testing.assert_array_equal(samples_for_prediction(str(root), "image", shape, settings), stored)


def test_read_for_prediction_refuses_another_size_or_channel_count(tmp_path):
    gray = _save(tmp_path / "gray.png", np.zeros((8, 8), dtype=np.uint8))
    rgb = _save(tmp_path / "rgb.png", np.zeros((8, 8, 3), dtype=np.uint8))
    with pytest.raises(ValidationError, match=r"features: expected images of the shape the model was trained on, "
                                              r"\(6, 6, 1\); received images of size 8x8 where the model was trained "
                                              r"on 6x6"):
        images.read_for_prediction(gray, (6, 6, 1), {}, "features")
    with pytest.raises(ValidationError, match=r"3 channel\(s\) where the model was trained on 1"):
        images.read_for_prediction(rgb, (8, 8, 1), {}, "features")
    with pytest.raises(ValidationError, match=r"features: expected images of one color mode"):
        images.read_for_prediction([gray, rgb], (8, 8, 1), {}, "features")
    with pytest.raises(ValidationError, match=r"features: expected existing image files"):
        images.read_for_prediction(tmp_path / "nope.png", (8, 8, 1), {}, "features")
    # the recorded settings make them fit
    resized = images.read_for_prediction([gray, rgb], (6, 6, 1), {"resize": [6, 6], "color_mode": "L"}, "features")
    assert resized.shape == (2, 6, 6, 1)


# --- CNN queues on digits -----------------------------------------------------------------------
def _digits_splitset(digits: str):
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder

    return aiqc.Pipeline.Image.make(digits, label_encoder=dict(sklearn_preprocess=OneHotEncoder()),
                                    feature_encoders=dict(sklearn_preprocess=MinMaxScaler()), size_validation=0.12,
                                    random_state=0)


@pytest.mark.backends
@pytest.mark.parametrize(("library", "build", "train"), [("pytorch", image_torch_build, image_torch_train),
                                                         ("keras", image_keras_build, image_keras_train)])
def test_a_cnn_learns_the_digits(db, digits, library, build, train):
    splitset = _digits_splitset(digits)
    queue = aiqc.Experiment.make(library=library, analysis_type="classification_multi", fn_build=build,
                                 fn_train=train, hyperparameters={"filters": [8], "epoch_count": [4],
                                                                  "batch_size": [32]},
                                 splitset_id=splitset.id)
    queue.run_jobs(progress=False)
    frame = queue.metrics_to_pandas(["accuracy"])
    validation = frame.query("split == 'validation'")["accuracy"]
    assert len(validation) == 1 and validation.iloc[0] > 0.5, frame


# --- everything downstream, unchanged -----------------------------------------------------------
def test_a_searched_pruned_image_queue_reports_and_predicts_raw_files_as_stored(db, digits, tmp_path):
    """An image queue goes through the same search, pruning, report and predict as a table:
    predicting the raw PNG files of the test split gives the stored test predictions."""
    pytest.importorskip("torch")
    pytest.importorskip("optuna")
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder

    from aiqc.search import Categorical, Search

    splitset = aiqc.Pipeline.Image.make(digits, label_encoder=dict(sklearn_preprocess=OneHotEncoder()),
                                        feature_encoders=dict(sklearn_preprocess=MinMaxScaler()),
                                        size_test=0.1, size_validation=0.1, random_state=0)
    queue = aiqc.Experiment.make(
        library="pytorch", analysis_type="classification_multi", fn_build=image_torch_build,
        fn_train=image_torch_train, splitset_id=splitset.id,
        hyperparameters={"filters": Categorical([4, 8]), "epoch_count": [3], "batch_size": [64]},
        search=Search(strategy="random", n_trials=3, seed=0, pruner="median", n_startup_trials=1))
    summary = queue.run_jobs(progress=False)
    assert summary.failed == 0 and summary.complete + summary.pruned == 3
    report = queue.report(tmp_path / "images.html")
    assert "Confusion matrices" in report.read_text()

    best = queue.best_job()
    rows, predictions, probabilities = best.predictions("test")
    files = splitset.label.dataset.to_pandas(["file"], rows)["file"].tolist()
    predicted = best.predict([str(Path(digits) / name) for name in files])
    classes = splitset.class_names()
    assert predicted["prediction"].tolist() == [classes[i] for i in predictions.ravel()]
    np.testing.assert_allclose(predicted[[f"probability_{c}" for c in classes]].to_numpy(), probabilities,
                               rtol=1e-5, atol=1e-6)


def test_the_low_level_table_api_refuses_images_clearly(db, folder, row_counts):
    splitset = aiqc.Pipeline.Image.make(folder, random_state=0)
    before = row_counts()
    with pytest.raises(ValidationError, match=r"^label: expected a Label of a table for Splitset\.make; .* holds images"):
        aiqc.Splitset.make(splitset.label, splitset.feature)
    with pytest.raises(ValidationError, match=r"^splitset: expected a splitset of a table for fit_encoders"):
        splitset.fit_encoders()
    with pytest.raises(ValidationError, match=r"^splitset: expected a table for features_to_pandas"):
        splitset.features_to_pandas()
    assert row_counts() == before
