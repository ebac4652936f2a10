"""``Pipeline.Sequence.make``: sequences from a 3-D array or a long DataFrame, padding and
truncation, splits and per-feature encoders fit on training sequences, models in both
libraries, the bundled ``signals.parquet`` and the reader of new sequences for ``predict``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import aiqc
from aiqc import datum
from aiqc.data import sequences
from aiqc.data.arrays import samples_for_prediction
from aiqc.exceptions import ValidationError

from fns import SEQUENCE_FUNCTIONS


@pytest.fixture
def datums(tmp_path, monkeypatch):
    """Generated datums go into a temporary folder."""
    monkeypatch.setenv("AIQC_DATUMS", str(tmp_path / "datums"))
    return tmp_path / "datums"


def _array(count=24, steps=6, features=2, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """(samples (count, steps, features), labels 'a'/'b'/'c' in turn): a known answer."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(count, steps, features)).round(4), np.array(["a", "b", "c"] * (count // 3))


def _long(array: np.ndarray, labels: np.ndarray, shuffle: bool = True, seed: int = 0) -> pd.DataFrame:
    """The long DataFrame of ``array``: ids ``s0``, ``s1``..., a time column ``t``, features
    ``x0``, ``x1``..., rows shuffled within each sequence's block of the frame (order
    from ``t``), sequences in their array order."""
    count, steps, features = array.shape
    df = pd.DataFrame({"sequence_id": np.repeat([f"s{i}" for i in range(count)], steps),
                       "t": np.tile(np.arange(steps), count),
                       **{f"x{f}": array[..., f].ravel() for f in range(features)},
                       "label": np.repeat(labels, steps)})
    if shuffle:  # shuffle the rows of each sequence, keeping the sequences' first appearance in order
        rng = np.random.default_rng(seed)
        df = df.iloc[np.concatenate([start + rng.permutation(steps) for start in range(0, len(df), steps)])]
    return df.reset_index(drop=True)


def _ragged(lengths=(5, 3, 5, 4, 2, 5)) -> pd.DataFrame:
    """A long frame of sequences of the given lengths: sequence i's value at step t is
    ``10 * (i + 1) + t`` in feature ``v`` and its negative in ``w``; labels alternate."""
    rows = [dict(sequence_id=i, v=10.0 * (i + 1) + t, w=-(10.0 * (i + 1) + t), label="ab"[i % 2])
            for i, n in enumerate(lengths) for t in range(n)]
    return pd.DataFrame(rows)


# --- the bundled datum ---------------------------------------------------------------------------
def test_signals_datum_is_generated_deterministically_and_listed(datums, tmp_path):
    df = datum.to_pandas("signals.parquet")
    assert list(df.columns) == ["sequence_id", "t", "x", "y", "z", "label"]
    assert df.shape == (300 * 40, 6)
    assert df.groupby("sequence_id").size().eq(40).all()
    assert df.drop_duplicates("sequence_id")["label"].value_counts().to_dict() == {"sine": 100, "square": 100,
                                                                                  "sawtooth": 100}
    again = pd.read_parquet(sequences.write_signals(tmp_path))
    pd.testing.assert_frame_equal(df, again)
    listed = datum.list_datums().set_index("name").loc["signals.parquet"]
    assert (listed["modality"], listed["rows"], listed["label"]) == ("sequence", 300, "label")


# --- sources ---------------------------------------------------------------------------------------
def test_long_frame_and_3d_array_store_the_same_samples(db):
    array, labels = _array()
    from_array = aiqc.Pipeline.Sequence.make(array, labels=labels, feature_names=["x0", "x1"], random_state=3)
    from_long = aiqc.Pipeline.Sequence.make(_long(array, labels), order_column="t", random_state=3)
    a, b = from_array.feature.dataset, from_long.feature.dataset
    assert a.id != b.id and a.modality == b.modality == "sequence"
    np.testing.assert_array_equal(a.to_array(), array)
    np.testing.assert_array_equal(b.to_array(), array)
    assert a.sample_shape == b.sample_shape == [6, 2] and a.channels == b.channels == ["x0", "x1"]
    # one row per sequence: its id (its position for an array) and its label
    assert a.to_pandas()["sequence_id"].tolist() == list(range(24))
    assert b.to_pandas()["sequence_id"].tolist() == [f"s{i}" for i in range(24)]
    assert b.to_pandas()["label"].tolist() == a.to_pandas()["label"].tolist() == labels.tolist()
    for split in ("train", "test"):
        np.testing.assert_array_equal(from_array.indices(split), from_long.indices(split))
        np.testing.assert_array_equal(from_array.samples(split)["features"], from_long.samples(split)["features"])
    assert b.settings["order_column"] == "t" and b.settings["feature_columns"] == ["x0", "x1"]
    assert a.settings["order_column"] is None and a.settings["feature_columns"] == ["x0", "x1"]


def test_array_defaults_feature_names_and_takes_labels_from_a_dataframe(db):
    array, labels = _array()
    splitset = aiqc.Pipeline.Sequence.make(array, label_column="kind", labels=pd.DataFrame({"kind": labels}))
    dataset = splitset.feature.dataset
    assert dataset.channels == ["feature_0", "feature_1"]
    assert dataset.to_pandas()["kind"].tolist() == labels.tolist() and splitset.label.column == "kind"


def test_sequences_keep_first_seen_order_and_rows_order_without_order_column(db):
    df = pd.DataFrame({"sequence_id": ["z", "z", "a", "a", "m", "m"], "v": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                       "label": ["p", "p", "q", "q", "p", "p"]})
    plan = sequences.plan_sequences(df)
    assert plan.df["sequence_id"].tolist() == ["z", "a", "m"]
    np.testing.assert_array_equal(plan.array[..., 0], [[1, 2], [3, 4], [5, 6]])
    reordered = sequences.plan_sequences(df.assign(t=[2, 1, 1, 2, 2, 1]), order_column="t")
    np.testing.assert_array_equal(reordered.array[..., 0], [[2, 1], [3, 4], [6, 5]])
    assert reordered.channels == ["v"]  # the order column is not a feature


# --- splits and encoders ----------------------------------------------------------------------------
def test_splits_are_stratified_disjoint_and_reproducible(db):
    array, labels = _array(count=60)
    a = aiqc.Pipeline.Sequence.make(array, labels=labels, size_validation=0.2, random_state=7)
    with pytest.warns(aiqc.exceptions.DataReusedNotice):
        b = aiqc.Pipeline.Sequence.make(array, labels=labels, size_validation=0.2, random_state=7)
        c = aiqc.Pipeline.Sequence.make(array, labels=labels, size_validation=0.2, random_state=8)
    parts = [a.indices(s) for s in ("train", "validation", "test")]
    union = np.concatenate(parts)
    assert len(union) == 60 and len(np.unique(union)) == 60
    for rows in parts:
        counts = pd.Series(labels[rows]).value_counts()
        assert set(counts.index) == {"a", "b", "c"} and counts.max() - counts.min() <= 1
    for split in ("train", "validation", "test"):
        np.testing.assert_array_equal(a.indices(split), b.indices(split))
    assert not np.array_equal(a.indices("test"), c.indices("test"))
    with pytest.warns(aiqc.exceptions.DataReusedNotice):  # the same sequences: the stored dataset
        folded = aiqc.Pipeline.Sequence.make(array, labels=labels, fold_count=3, random_state=7)
    held_out = np.concatenate([folded.indices("validation", fold) for fold in range(3)])
    assert sorted(held_out.tolist()) == sorted(folded.indices("train").tolist())
    for fold in range(3):
        assert not set(folded.indices("train", fold)) & set(folded.indices("validation", fold))
        assert set(pd.Series(labels[folded.indices("validation", fold)]).value_counts()) <= {4, 5, 6}


def test_standard_scaler_is_fit_per_feature_on_training_sequences_only(db):
    array, labels = _array(count=60, features=3)
    array[:, :, 1] *= 50  # features of different scales
    splitset = aiqc.Pipeline.Sequence.make(array, labels=labels, label_encoder=dict(sklearn_preprocess=OneHotEncoder()),
                                           feature_encoders=dict(sklearn_preprocess=StandardScaler()),
                                           size_validation=0.2, random_state=1)
    train = array[splitset.indices("train")]
    (scaler,) = [e.fitted for e in splitset.encoders_for(side="feature")]
    # every timestep of every training sequence, one column per feature
    np.testing.assert_allclose(scaler.mean_, train.reshape(-1, 3).mean(axis=0))
    np.testing.assert_allclose(scaler.scale_, train.reshape(-1, 3).std(axis=0))
    assert not np.allclose(scaler.mean_, array.reshape(-1, 3).mean(axis=0))
    samples = splitset.samples("test")
    test = array[splitset.indices("test")]
    assert samples["features"].shape == test.shape and samples["features"].dtype == np.float32
    np.testing.assert_allclose(samples["features"], (test - scaler.mean_) / scaler.scale_, rtol=1e-5, atol=1e-5)
    assert samples["labels"].shape == (len(test), 3)

    with pytest.warns(aiqc.exceptions.DataReusedNotice):
        folded = aiqc.Pipeline.Sequence.make(array, labels=labels, fold_count=3, random_state=1,
                                             feature_encoders=dict(sklearn_preprocess=StandardScaler()))
    for fold in range(3):
        (fitted,) = [e.fitted for e in folded.encoders_for(fold, side="feature")]
        fold_train = array[folded.indices("train", fold)]
        np.testing.assert_allclose(fitted.mean_, fold_train.reshape(-1, 3).mean(axis=0))


# --- padding and truncation --------------------------------------------------------------------------
def test_ragged_sequences_are_padded_and_the_padding_is_recorded(db):
    splitset = aiqc.Pipeline.Sequence.make(_ragged(), padding="post", pad_value=-1.0, size_test=0.34)
    dataset = splitset.feature.dataset
    stored = dataset.to_array()
    assert dataset.sample_shape == [5, 2]
    np.testing.assert_array_equal(stored[1, :, 0], [20, 21, 22, -1, -1])
    np.testing.assert_array_equal(stored[4, :, 1], [-50, -51, -1, -1, -1])
    assert dataset.settings == {"sequence_column": "sequence_id", "order_column": None, "feature_columns": ["v", "w"],
                                "padding": "post", "truncating": None, "length": 5, "pad_value": -1.0,
                                "lengths": {"min": 2, "max": 5, "median": 4.5, "padded": 3, "truncated": 0}}
    pre = sequences.plan_sequences(_ragged(), padding="pre")
    np.testing.assert_array_equal(pre.array[1, :, 0], [0, 0, 20, 21, 22])
    np.testing.assert_array_equal(pre.array[0, :, 0], [10, 11, 12, 13, 14])


@pytest.mark.parametrize("padding, truncating, first, short", [
    ("post", "post", [10, 11, 12, 13], [50, 51, 0, 0]),
    ("post", "pre", [11, 12, 13, 14], [50, 51, 0, 0]),
    ("pre", "pre", [11, 12, 13, 14], [0, 0, 50, 51]),
])
def test_length_truncates_and_pads_and_records_it(padding, truncating, first, short):
    plan = sequences.plan_sequences(_ragged(), padding=padding, truncating=truncating, length=4)
    assert plan.array.shape == (6, 4, 2)
    np.testing.assert_array_equal(plan.array[0, :, 0], first)  # 5 steps, cut to 4
    np.testing.assert_array_equal(plan.array[4, :, 0], short)  # 2 steps, padded to 4
    np.testing.assert_array_equal(plan.array[3, :, 0], [40, 41, 42, 43])  # exactly 4
    assert (plan.settings["padding"], plan.settings["truncating"], plan.settings["length"]) == (padding, truncating, 4)
    assert plan.settings["lengths"] == {"min": 2, "max": 5, "median": 4.5, "padded": 2, "truncated": 3}


def test_an_array_is_cut_or_padded_to_length():
    array, labels = _array(steps=6)
    cut = sequences.plan_sequences(array, labels=labels, truncating="pre", length=4)
    np.testing.assert_array_equal(cut.array, array[:, 2:])
    padded = sequences.plan_sequences(array, labels=labels, padding="pre", length=8, pad_value=9.0)
    np.testing.assert_array_equal(padded.array[:, 2:], array)
    assert (padded.array[:, :2] == 9.0).all() and padded.settings["lengths"]["padded"] == 24


# --- bad input: a clear error, nothing written --------------------------------------------------------
def _bad_cases():
    array, labels = _array()
    long = _long(array, labels)
    nan = long.copy()
    nan.loc[nan["sequence_id"] == "s5", "x1"] = np.nan
    inf = array.copy()
    inf[3, 2, 1] = np.inf
    varying = long.copy()
    varying.loc[(varying["sequence_id"] == "s2") & (varying["t"] == 0), "label"] = "z"
    text = long.assign(x1=long["x1"].astype(str))
    tied = long.copy()
    tied.loc[(tied["sequence_id"] == "s4") & (tied["t"] == 1), "t"] = 0
    return {
        "2-D array": (dict(source=array[:, :, 0], labels=labels), "source", r"3-D array .*received a 2-D array"),
        "NaN in a sequence": (dict(source=nan, order_column="t"), "source", r"NaN or inf in 1 sequence\(s\): \['s5'\]"),
        "inf in an array": (dict(source=inf, labels=labels), "source", r"NaN or inf .*\[3\]"),
        "ragged without padding": (dict(source=_ragged()), "source",
                                   r"one length, or padding=.*\{2: 1, 3: 1, 4: 1, 5: 3\}.*\{1: 3, 3: 4, 4: 2\}"),
        "shorter than length": (dict(source=_ragged(), length=5, truncating="post"), "padding", r"shorter than length=5"),
        "longer than length": (dict(source=_ragged(), length=4, padding="post"), "truncating", r"longer than length=4"),
        "truncating without length": (dict(source=_ragged(), padding="post", truncating="pre"), "truncating",
                                      r"unless length= is given"),
        "bad padding": (dict(source=_ragged(), padding="end"), "padding", r"None, 'pre' or 'post'"),
        "bad length": (dict(source=_ragged(), padding="post", length=0), "length", r"integer >= 1"),
        "bad pad_value": (dict(source=_ragged(), padding="post", pad_value=float("nan")), "pad_value", "finite"),
        "non-numeric feature": (dict(source=text, order_column="t", feature_columns=["x0", "x1"]), "feature_columns",
                                r"numeric columns; received \{'x1': '(object|str)'\}"),
        "missing sequence column": (dict(source=long, sequence_column="id"), "sequence_column", r"received 'id'"),
        "missing label column": (dict(source=long, label_column="kind"), "label_column", r"received 'kind'"),
        "missing order column": (dict(source=long, order_column="time"), "order_column", r"received 'time'"),
        "missing feature column": (dict(source=long, feature_columns=["x0", "x9"]), "feature_columns",
                                   r"unknown \['x9'\]"),
        "one sequence": (dict(source=long[long["sequence_id"] == "s0"]), "source", r"at least 2 sequences; received 1"),
        "one array sample": (dict(source=array[:1], labels=labels[:1]), "source", r"at least 2 samples"),
        "labels of the wrong length": (dict(source=array, labels=labels[:-1]), "labels", r"expected 24 labels.*received 23"),
        "2-D labels": (dict(source=array, labels=labels.reshape(-1, 1)), "labels", r"1-D"),
        "no labels": (dict(source=array), "labels", r"one per sequence"),
        "labels with a frame": (dict(source=long, labels=labels), "labels", r"None with a long DataFrame"),
        "label varies": (dict(source=varying, order_column="t"), "label_column", r"varies: \['s2'\]"),
        "repeated time": (dict(source=tied, order_column="t"), "order_column", r"repeated 't' values in 1 .*\['s4'\]"),
        "wrong feature names": (dict(source=array, labels=labels, feature_names=["x"]), "feature_names", r"2 strings"),
        "not a source": (dict(source=[[1, 2], [3, 4]]), "source", r"3-D numpy array"),
        "bad tags": (dict(source=array, labels=labels, tags=5), "tags", r"a list of strings; received 5"),
    }


BAD = _bad_cases()


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_clear_error_and_writes_nothing(row_counts, case):
    kwargs, parameter, message = BAD[case]
    before = row_counts()
    with pytest.raises(ValidationError, match=message) as raised:
        aiqc.Pipeline.Sequence.make(**kwargs)
    assert str(raised.value).startswith(f"{parameter}:"), str(raised.value)
    assert row_counts() == before


# --- new sequences for predict ---------------------------------------------------------------------
def test_read_for_prediction_pivots_pads_and_checks_like_make(db):
    splitset = aiqc.Pipeline.Sequence.make(_ragged(), order_column=None, padding="pre", size_test=0.34)
    dataset = splitset.feature.dataset
    shape, settings = tuple(dataset.sample_shape), dataset.settings
    new = _ragged((3, 5)).assign(label=None)  # the label column is ignored
    array = sequences.read_for_prediction(new, shape, settings, "samples")
    np.testing.assert_array_equal(array[0, :, 0], [0, 0, 10, 11, 12])
    np.testing.assert_array_equal(array[1, :, 1], [-20, -21, -22, -23, -24])
    # the stored sequences read back the same way
    np.testing.assert_array_equal(sequences.read_for_prediction(_ragged(), shape, settings, "samples"),
                                  dataset.to_array())
    np.testing.assert_array_equal(samples_for_prediction(_ragged(), "sequence", shape, settings), dataset.to_array())
    with pytest.raises(ValidationError, match=r"samples: expected sequences of 5 timesteps.*truncating=None.*\{1: 6\}"):
        sequences.read_for_prediction(_ragged((3, 6)), shape, settings, "samples")
    with pytest.raises(ValidationError, match=r"samples: expected the columns .*\['sequence_id', 'v', 'w'\].*\['w'\]"):
        sequences.read_for_prediction(_ragged().drop(columns="w"), shape, settings, "samples")
    with pytest.raises(ValidationError, match=r"samples: expected a numpy array \(N, 5, 2\) or a long DataFrame"):
        sequences.read_for_prediction([1, 2], shape, settings, "samples")


def test_read_for_prediction_without_padding_requires_the_trained_length(db):
    array, labels = _array(steps=6)
    splitset = aiqc.Pipeline.Sequence.make(_long(array, labels), order_column="t")
    dataset = splitset.feature.dataset
    shape, settings = tuple(dataset.sample_shape), dataset.settings
    again = sequences.read_for_prediction(_long(array[:4], labels[:4], seed=5), shape, settings, "rows")
    np.testing.assert_array_equal(again, array[:4])
    short = _long(array[:4], labels[:4]).query("t < 5")
    with pytest.raises(ValidationError, match=r"rows: expected sequences of 6 timesteps.*padding=None.*'s0': 5"):
        sequences.read_for_prediction(short, shape, settings, "rows")
    with pytest.raises(ValidationError, match=r"rows: expected numeric feature columns; received \{'x0': '(object|str)'\}"):
        sequences.read_for_prediction(_long(array[:4], labels[:4]).astype({"x0": str}), shape, settings, "rows")


# --- models --------------------------------------------------------------------------------------
def _signals(fold_count=None):
    return aiqc.Pipeline.Sequence.make(datum.get_path("signals.parquet"), order_column="t",
                                       label_encoder=dict(sklearn_preprocess=OneHotEncoder()),
                                       feature_encoders=dict(sklearn_preprocess=StandardScaler()),
                                       size_validation=None if fold_count else 0.12, fold_count=fold_count,
                                       random_state=0)


@pytest.mark.backends
@pytest.mark.parametrize("library, fold_count", [
    ("pytorch", None),
    ("pytorch", 3),
    ("keras", None),
    pytest.param("keras", 3, marks=pytest.mark.slow),  # about 10 s
])
def test_a_gru_learns_the_signals_above_chance(db, datums, library, fold_count):
    splitset = _signals(fold_count)
    samples = splitset.samples("train", 0 if fold_count else None)
    assert samples["features"].shape[1:] == (40, 3) and samples["features"].dtype == np.float32
    fn_build, fn_train = SEQUENCE_FUNCTIONS[library]
    queue = aiqc.Experiment.make(library=library, analysis_type="classification_multi", fn_build=fn_build,
                                 fn_train=fn_train, splitset_id=splitset.id,
                                 hyperparameters={"neuron_count": [32], "epoch_count": [8], "batch_size": [16]})
    summary = queue.run_jobs(progress=False)
    assert (summary.complete, summary.failed) == (fold_count or 1, 0)
    accuracies = [job.metrics()["test"]["accuracy"] for job in queue.jobs]
    assert min(accuracies) > 0.45 and np.mean(accuracies) > 0.5, accuracies  # chance: 1/3
    assert [job.fold_index for job in queue.jobs] == (list(range(fold_count)) if fold_count else [None])
    if fold_count is None:  # the raw long table of the test sequences predicts as stored
        job = queue.jobs.get()
        rows, predictions, probabilities = job.predictions("test")
        ids = splitset.label.dataset.to_pandas(["sequence_id"], rows)["sequence_id"].tolist()
        raw = datum.to_pandas("signals.parquet")
        raw = raw[raw["sequence_id"].isin(ids)].set_index("sequence_id").loc[ids].reset_index()  # in test order
        predicted = job.predict(raw)
        classes = splitset.class_names()
        assert predicted["prediction"].tolist() == [classes[i] for i in predictions.ravel()]
        np.testing.assert_allclose(predicted[[f"probability_{c}" for c in classes]].to_numpy(), probabilities,
                                   rtol=1e-4, atol=1e-5)
