"""Pipeline.Tabular.make and the step-by-step API: what gets stored, and that it is right."""

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

import aiqc
from aiqc import datum
from aiqc.orm import Dataset, Encoder, Fold, Splitset

from fns import reference_make


def test_reference_usage_verbatim(db, iris):
    splitset = reference_make(iris)
    assert isinstance(splitset.id, int)
    stored = Splitset.get_by_id(splitset.id)
    assert (stored.count_train, stored.count_validation, stored.count_test) == (99, 18, 33)
    assert round(150 * 0.22) == stored.count_test and round(150 * 0.12) == stored.count_validation
    assert stored.label.column == "species"
    assert stored.label.classes == ["setosa", "versicolor", "virginica"]
    assert stored.feature.columns == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert stored.label.dataset_id == stored.feature.dataset_id
    # encoders: one label encoder, one feature encoder, fit once (no folds)
    assert [(e.side, e.columns) for e in stored.encoders_for()] == [
        ("feature", stored.feature.columns), ("label", ["species"])]


def test_splits_are_disjoint_cover_all_rows_and_keep_class_shares(db, iris):
    splitset = reference_make(iris)
    parts = [splitset.indices(s) for s in ("train", "validation", "test")]
    union = np.concatenate(parts)
    assert len(union) == 150 and len(np.unique(union)) == 150
    shares = iris["species"].value_counts(normalize=True)
    for rows in parts:
        counts = iris["species"].iloc[rows].value_counts()
        expected = shares * len(rows)
        assert ((counts - expected).abs() <= 1).all(), counts


def test_same_seed_same_splits_other_seed_other_splits(db, iris):
    a = reference_make(iris, random_state=7)
    b = reference_make(iris, random_state=7)
    c = reference_make(iris, random_state=8)
    for split in ("train", "validation", "test"):
        assert np.array_equal(a.indices(split), b.indices(split))
    assert not np.array_equal(a.indices("test"), c.indices("test"))
    assert a.random_state == 7


def test_seed_is_drawn_and_recorded_when_not_given(db, iris):
    splitset = reference_make(iris)
    again = Splitset.make(splitset.label, splitset.feature, size_test=0.22, size_validation=0.12,
                          random_state=splitset.random_state)
    assert np.array_equal(splitset.indices("test"), again.indices("test"))


def test_encoders_fit_on_training_rows_only(db, iris):
    """A huge outlier placed only in test rows must not move the fitted scaler."""
    clean = reference_make(iris, random_state=3)
    spiked = iris.copy()
    test_rows = clean.indices("test")
    spiked.loc[test_rows, "sepal_length"] = 1e9
    leaky = reference_make(spiked, random_state=3)
    assert np.array_equal(leaky.indices("test"), test_rows)
    scaler_clean = clean.encoders_for(side="feature")[0].fitted
    scaler_spiked = leaky.encoders_for(side="feature")[0].fitted
    np.testing.assert_array_equal(scaler_clean.mean_, scaler_spiked.mean_)
    np.testing.assert_array_equal(scaler_clean.scale_, scaler_spiked.scale_)
    train = iris.iloc[clean.indices("train")]
    np.testing.assert_allclose(scaler_clean.mean_, train.iloc[:, :4].mean().to_numpy())
    encoded_train = clean.features_to_numpy("train")
    np.testing.assert_allclose(encoded_train.mean(axis=0), 0, atol=1e-12)


def test_encoded_reads_match_sklearn(db, iris):
    splitset = reference_make(iris)
    train, test = iris.iloc[splitset.indices("train")], iris.iloc[splitset.indices("test")]
    scaler = StandardScaler().fit(train.iloc[:, :4])
    np.testing.assert_allclose(splitset.features_to_numpy("test"), scaler.transform(test.iloc[:, :4]))
    onehot = OneHotEncoder().fit(train[["species"]])
    np.testing.assert_array_equal(splitset.label_to_numpy("test"), onehot.transform(test[["species"]]).toarray())
    raw = splitset.features_to_pandas("test", encoded=False)
    pd.testing.assert_frame_equal(raw, test.iloc[:, :4])
    assert list(splitset.label_to_pandas("test", encoded=True).columns) == [
        "species_setosa", "species_versicolor", "species_virginica"]


def test_encoders_reapply_identically_in_a_new_process(db, iris):
    splitset = reference_make(iris)
    here = splitset.features_to_numpy("validation")
    script = textwrap.dedent(f"""
        import numpy as np, aiqc
        aiqc.setup({str(db)!r})
        s = aiqc.Splitset.get_by_id({splitset.id})
        np.save({str(db.parent / 'v.npy')!r}, s.features_to_numpy('validation'))
        np.save({str(db.parent / 'l.npy')!r}, s.label_to_numpy('validation'))
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    np.testing.assert_array_equal(np.load(db.parent / "v.npy"), here)
    np.testing.assert_array_equal(np.load(db.parent / "l.npy"), splitset.label_to_numpy("validation"))


def test_folds_partition_training_rows(db):
    df = datum.to_pandas("iris_10x.tsv")
    splitset = reference_make(df, size_validation=None, fold_count=5, random_state=1)
    folds = list(splitset.folds.order_by(Fold.fold_index))
    assert len(folds) == 5
    train = splitset.indices("train")
    held_out = np.concatenate([f.indices_validation for f in folds])
    assert np.array_equal(np.sort(held_out), train)  # every training row held out exactly once
    for fold in folds:
        assert np.intersect1d(fold.indices_train, fold.indices_validation).size == 0
        assert np.array_equal(np.union1d(fold.indices_train, fold.indices_validation), train)
        assert np.intersect1d(fold.indices_validation, splitset.indices("test")).size == 0
        counts = df["species"].iloc[fold.indices_validation].value_counts()
        assert counts.max() - counts.min() <= 1  # stratified
    # encoders: the whole-train fit plus one per fold, each fit on that fold's train rows
    assert Encoder.select().where(Encoder.splitset == splitset).count() == 2 * 6
    fold2 = splitset.encoders_for(fold=2, side="feature")[0]
    expected = df.iloc[folds[2].indices_train, :4].mean().to_numpy()
    np.testing.assert_allclose(fold2.fitted.mean_, expected)
    assert splitset.features_to_numpy("validation", fold=2).shape == (len(folds[2].indices_validation), 4)
    assert splitset.features_to_numpy("test", fold=2).shape == (splitset.count_test, 4)


def test_bin_count_stratifies_a_continuous_label(db):
    df = datum.to_pandas("diabetes.csv")
    splitset = aiqc.Pipeline.Tabular.make(df_or_path=df, label_column="progression",
                                          feature_cols_excluded="progression", size_test=0.2,
                                          size_validation=0.2, bin_count=4, random_state=0)
    assert splitset.stratify == "bins" and splitset.label.categorical is False and splitset.label.classes is None
    bins = pd.qcut(df["progression"], 4, labels=False)
    for split in ("train", "validation", "test"):
        rows = splitset.indices(split)
        counts = bins.iloc[rows].value_counts()
        expected = bins.value_counts(normalize=True) * len(rows)
        assert (counts - expected).abs().max() <= 1
    # unencoded numeric features pass through untouched
    np.testing.assert_array_equal(splitset.features_to_numpy("test"),
                                  df.drop(columns="progression").iloc[splitset.indices("test")].to_numpy())


def test_continuous_label_without_bins_is_split_unstratified(db):
    df = datum.to_pandas("diabetes.csv")
    splitset = aiqc.Pipeline.Tabular.make(df_or_path=df, label_column="progression",
                                          feature_cols_excluded=["progression"], size_test=0.25)
    assert splitset.stratify == "none" and splitset.count_validation == 0
    assert splitset.count_test == round(442 * 0.25) and splitset.count_train == 442 - splitset.count_test
    assert splitset.split_names == ["train", "test"]


@pytest.mark.parametrize("name", ["iris.tsv", "breast_cancer.csv", "wine.parquet"])
def test_paths_of_each_format(db, name):
    label = datum.DATUMS[name][0]
    splitset = aiqc.Pipeline.Tabular.make(df_or_path=datum.get_path(name), label_column=label,
                                          label_encoder=dict(sklearn_preprocess=OrdinalEncoder()),
                                          feature_cols_excluded=label, size_validation=0.1)
    dataset = splitset.label.dataset
    original = datum.to_pandas(name)
    assert dataset.source.endswith(name)
    pd.testing.assert_frame_equal(dataset.to_pandas(), original)
    assert dataset.dtypes == {c: str(t) for c, t in original.dtypes.items()}
    assert len(dataset.sha256) == 64 and dataset.row_count == len(original)


def test_mixed_types_with_column_and_dtype_encoders(db):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "color": rng.choice(["red", "green", "blue"], 200),
        "size": rng.normal(10, 2, 200),
        "count": rng.integers(0, 5, 200),
        "target": rng.choice(["yes", "no"], 200),
    })
    splitset = aiqc.Pipeline.Tabular.make(
        df_or_path=df, label_column="target", label_encoder=dict(sklearn_preprocess=OrdinalEncoder()),
        feature_cols_excluded=["target"],
        feature_encoders=[dict(sklearn_preprocess=OneHotEncoder(sparse_output=False), columns=["color"]),
                          dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])],
        size_validation=0.15)
    encoded = splitset.features_to_pandas("train", encoded=True)
    assert list(encoded.columns) == ["color_blue", "color_green", "color_red", "size", "count"]
    assert set(splitset.label_to_numpy("test").ravel()) <= {0.0, 1.0}
    np.testing.assert_array_equal(encoded["count"].to_numpy(), df["count"].iloc[splitset.indices("train")].to_numpy())


def test_step_by_step_api_matches_one_call(db, iris):
    dataset = Dataset.Tabular.from_pandas(iris, name="iris")
    label = dataset.make_label("species")
    feature = dataset.make_feature(exclude_columns=["species"], label=label)
    splitset = Splitset.make(label, feature, size_test=0.22, size_validation=0.12, random_state=5)
    splitset.fit_encoders(label_encoder=dict(sklearn_preprocess=OneHotEncoder()),
                          feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])])
    one_call = reference_make(iris, random_state=5)
    for split in ("train", "validation", "test"):
        np.testing.assert_array_equal(splitset.features_to_numpy(split), one_call.features_to_numpy(split))
        np.testing.assert_array_equal(splitset.label_to_numpy(split), one_call.label_to_numpy(split))
    assert Dataset.get_by_id(dataset.id).sha256 == one_call.label.dataset.sha256
    assert label.to_numpy().shape == (150, 1) and feature.to_numpy().shape == (150, 4)
    with pytest.raises(aiqc.exceptions.ValidationError, match="already has"):
        splitset.fit_encoders(label_encoder=dict(sklearn_preprocess=OneHotEncoder()))


def test_one_sql_join_reaches_the_dataset(db, iris):
    from aiqc.orm import database_proxy

    splitset = reference_make(iris, name="iris-run")
    row = database_proxy.obj.execute_sql(
        "SELECT d.row_count, l.\"column\", s.count_test FROM splitset s "
        "JOIN label l ON s.label_id = l.id JOIN dataset d ON l.dataset_id = d.id WHERE s.id = ?",
        (splitset.id,)).fetchone()
    assert row == (150, "species", 33)
    assert splitset.name == "iris-run"


def test_failure_mid_write_leaves_nothing(db, iris, row_counts, monkeypatch):
    before = row_counts()

    def explode(self, plans):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Splitset, "_write_encoders", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        reference_make(iris)
    assert row_counts() == before


def test_large_frames_are_stored_in_parts(db, monkeypatch):
    import aiqc.data.frames as frames

    monkeypatch.setattr(frames, "PART_BYTES", 4096)
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(2000, 5)), columns=list("abcde"))
    df["y"] = rng.choice(["p", "q"], 2000)
    splitset = aiqc.Pipeline.Tabular.make(df_or_path=df, label_column="y", feature_cols_excluded="y")
    dataset = splitset.label.dataset
    assert dataset.parts.count() > 1
    from aiqc.orm.dataset import _read_frame
    _read_frame.cache_clear()
    pd.testing.assert_frame_equal(dataset.to_pandas(), df)
