"""Right answers on messy data: missing and infinite values, bools, dates, IDs, many categories,
any scikit-learn transformer (Pipelines, ColumnTransformers, the user's own classes) stored by
value, and ``job.predict`` on rows as users pass them.

``messy_frame`` is shared: ``from test_messy_data import messy_frame``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

import aiqc
from aiqc.exceptions import ValidationError


def messy_frame(rows: int = 600, seed: int = 0) -> pd.DataFrame:
    """A table as it arrives: an integer ``id``; a text category ``city`` (uneven shares); a bool
    ``member``; a datetime ``signup``; floats ``age`` and ``income`` with a few NaNs and ``score``
    without; and an imbalanced text label ``churn`` ('yes' in about 15% of the rows, more often
    for low scores, so a model has something to learn)."""
    rng = np.random.default_rng(seed)
    score = rng.normal(0, 1, rows)
    age = rng.normal(40, 12, rows).round(1)
    income = rng.lognormal(10, 0.5, rows).round(2)
    age[rng.choice(rows, max(1, rows // 40), replace=False)] = np.nan
    income[rng.choice(rows, max(1, rows // 60), replace=False)] = np.nan
    chance = 1 / (1 + np.exp(-(-2.1 - 1.2 * score)))  # ~15% overall
    churn = np.where(rng.random(rows) < chance, "yes", "no")
    churn[:2] = ["yes", "no"]  # both classes, even in a tiny frame
    return pd.DataFrame({
        "id": rng.permutation(np.arange(10_000, 10_000 + rows)).astype(np.int64),
        "city": pd.Series(rng.choice(["Lyon", "Oslo", "Pune", "Quito"], rows, p=[0.4, 0.3, 0.2, 0.1])).astype(str),
        "member": rng.random(rows) < 0.35,
        "signup": pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 730, rows), unit="D"),
        "age": age,
        "income": income,
        "score": score,
        "churn": churn,
    })


IMPUTE_SCALE = make_pipeline(SimpleImputer(), StandardScaler())


def _make(df, **overrides):
    """The messy frame's usual call: the ID and the date excluded, the city one-hot, the floats
    imputed and scaled, the bool passing through."""
    kwargs = dict(
        df_or_path=df, label_column="churn", label_encoder=dict(sklearn_preprocess=OrdinalEncoder()),
        feature_cols_excluded=["churn", "id", "signup"],
        feature_encoders=[dict(sklearn_preprocess=OneHotEncoder(handle_unknown="ignore"), columns=["city"]),
                          dict(sklearn_preprocess=make_pipeline(SimpleImputer(), StandardScaler()), columns=["age", "income"])],
        size_test=0.2, size_validation=0.2, random_state=0,
    )
    kwargs.update(overrides)
    return aiqc.Pipeline.Tabular.make(**kwargs)


def _refused(row_counts, call, message):
    before = row_counts()
    with pytest.raises(ValidationError, match=message):
        call()
    assert row_counts() == before


# --- the generator ---------------------------------------------------------------------------
def test_messy_frame_is_messy_and_importable():
    import test_messy_data

    assert test_messy_data.messy_frame is messy_frame
    df = messy_frame()
    assert len(df) == 600 and df["id"].is_unique
    assert df["member"].dtype == bool and pd.api.types.is_datetime64_any_dtype(df["signup"])
    assert pd.api.types.is_string_dtype(df["city"]) and df["id"].dtype == np.int64
    assert df["age"].isna().sum() > 0 and df["income"].isna().sum() > 0 and df["score"].notna().all()
    assert 0.10 < (df["churn"] == "yes").mean() < 0.20
    pd.testing.assert_frame_equal(messy_frame(50, seed=3), messy_frame(50, seed=3))


def test_the_usual_call_on_messy_data_works(db):
    df = messy_frame()
    splitset = _make(df)
    encoded = splitset.features_to_pandas("train", encoded=True)
    assert list(encoded.columns) == ["city_Lyon", "city_Oslo", "city_Pune", "city_Quito", "age", "income",
                                     "member", "score"]
    assert np.isfinite(encoded.to_numpy()).all()
    rows = splitset.indices("train")
    np.testing.assert_array_equal(encoded["member"].to_numpy(), df["member"].iloc[rows].astype(float).to_numpy())
    encoder = splitset.encoders_for(side="feature")[1]
    assert encoder.class_path == "sklearn.pipeline.Pipeline" and encoder.source is None
    assert isinstance(encoder.fitted, Pipeline)


# --- 1. missing and non-finite values ---------------------------------------------------------------
def test_label_with_nan_or_inf_is_refused(db, row_counts):
    df = messy_frame()
    df.loc[[4, 9], "churn"] = None
    _refused(row_counts, lambda: _make(df),
             r"label_column: expected a label without missing values; received 'churn' with 2 NaN/None value\(s\) "
             r"out of 600 rows")
    regression = messy_frame().assign(target=lambda d: d["score"] * 2)
    regression.loc[[1, 2, 3], "target"] = [np.inf, -np.inf, np.inf]
    _refused(row_counts, lambda: _make(regression, label_column="target", label_encoder=None,
                                       feature_cols_excluded=["target", "churn", "id", "signup"]),
             r"label_column: expected a label of finite values; received 'target' with 3 infinite \(inf/-inf\) value\(s\)")
    regression.loc[7, "target"] = np.nan
    _refused(row_counts, lambda: _make(regression, label_column="target", label_encoder=None,
                                       feature_cols_excluded=["target", "churn", "id", "signup"]),
             r"'target' with 1 NaN/None value\(s\) and 3 infinite")


def test_nan_in_encoded_features_is_refused_with_an_imputer_hint(db, row_counts):
    df = messy_frame()
    missing = int(df["age"].isna().sum())
    scaler = [dict(sklearn_preprocess=OneHotEncoder(), columns=["city"]),
              dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])]
    before = row_counts()
    with pytest.raises(ValidationError, match=r"feature_encoders\[1\] \(StandardScaler\): expected finite encoded "
                                              r"features; received 'age' \(NaN in \d+ training and \d+ held-out") as info:
        _make(df, feature_encoders=scaler)
    assert row_counts() == before
    message = str(info.value)
    assert "'income' (NaN in" in message and "'score' (" not in message
    assert "make_pipeline(SimpleImputer(), StandardScaler())" in message
    counts = [int(n) for n in re.search(r"'age' \(NaN in (\d+) training and (\d+) held-out", message).groups()]
    assert sum(counts) == missing  # every row of the scope was checked: training and held-out


def test_nan_in_a_column_that_passes_through_is_refused(db, row_counts):
    df = messy_frame()
    _refused(row_counts, lambda: _make(df, feature_encoders=[dict(sklearn_preprocess=OneHotEncoder(), columns=["city"])]),
             rf"feature_encoders: expected finite values in the numeric columns no encoder claims .*received "
             rf"'age' \({df['age'].isna().sum()} NaN of 600 rows\), 'income' \({df['income'].isna().sum()} NaN of 600 rows\)"
             r".*make_pipeline\(SimpleImputer\(\), StandardScaler\(\)\), columns=\['age', 'income'\]")


def test_inf_in_features_is_refused(db, row_counts):
    df = messy_frame()
    df.loc[[5, 6], "score"] = [np.inf, -np.inf]
    _refused(row_counts, lambda: _make(df),
             r"feature_encoders: expected feature values without inf; received 'score' \(2 inf of 600 rows\)")
    _refused(row_counts, lambda: _make(df, feature_encoders=[dict(sklearn_preprocess=OneHotEncoder(), columns=["city"]),
                                                             dict(sklearn_preprocess=IMPUTE_SCALE, dtypes=["float64"])]),
             r"'score' \(2 inf of 600 rows\).*replace\(\[np.inf, -np.inf\], np.nan\)")


def test_inf_made_by_an_encoder_is_refused(db, row_counts):
    df = messy_frame().assign(visits=lambda d: (d["score"] > 0).astype(float))  # zeros: log(0) = -inf
    encoders = [dict(sklearn_preprocess=FunctionTransformer(np.log), columns=["visits"]),
                dict(sklearn_preprocess=OneHotEncoder(), columns=["city"]),
                dict(sklearn_preprocess=IMPUTE_SCALE, columns=["age", "income"])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's "divide by zero in log"
        _refused(row_counts, lambda: _make(df, feature_encoders=encoders),
                 r"feature_encoders\[0\] \(FunctionTransformer\): expected finite encoded features; received 'visits' "
                 r"\(inf in \d+ training and \d+ held-out row\(s\)\) in the output of the train split's encoder")


class _NanWhenFitOnFewRows:
    """Fine on the whole train split, NaN when fit on a fold's (fewer) training rows."""

    def __init__(self, threshold: int = 0) -> None:
        self.threshold = threshold

    def fit(self, X, y=None):
        self.rows_ = len(X)
        return self

    def transform(self, X):
        out = np.asarray(X, dtype=float).copy()
        if self.rows_ < self.threshold:
            out[:] = np.nan
        return out


def test_each_fold_scope_is_checked_too(db, row_counts):
    df = messy_frame()
    odd = dict(sklearn_preprocess=_NanWhenFitOnFewRows(threshold=400), columns=["score"])
    _refused(row_counts, lambda: _make(df, size_validation=None, fold_count=3,
                                       feature_encoders=[dict(sklearn_preprocess=OneHotEncoder(), columns=["city"]),
                                                         dict(sklearn_preprocess=IMPUTE_SCALE, columns=["age", "income"]), odd]),
             r"feature_encoders\[2\] \(_NanWhenFitOnFewRows\): expected finite encoded features; received 'score' "
             r"\(NaN in \d+ training and \d+ held-out row\(s\)\) in the output of fold 0's encoder")


def test_non_numeric_encoder_output_is_refused(db, row_counts):
    identity = dict(sklearn_preprocess=FunctionTransformer(), columns=["city"])
    _refused(row_counts, lambda: _make(messy_frame(), feature_encoders=[identity, dict(sklearn_preprocess=IMPUTE_SCALE,
                                                                                       columns=["age", "income"])]),
             r"feature_encoders\[0\] \(FunctionTransformer\): expected a transformer whose output is numeric")


# --- 2. column types ----------------------------------------------------------------------------
def test_bool_features_pass_through_as_0_1(db):
    df = pd.DataFrame({"x": np.linspace(0, 1, 80), "flag": [True, False, False, True] * 20, "y": ["a", "b"] * 40})
    splitset = aiqc.Pipeline.Tabular.make(df_or_path=df, label_column="y", feature_cols_excluded="y", size_test=0.25)
    encoded = splitset.features_to_pandas("test", encoded=True)
    assert list(encoded.columns) == ["x", "flag"] and encoded["flag"].dtype == np.float64
    np.testing.assert_array_equal(encoded["flag"], df["flag"].iloc[splitset.indices("test")].astype(float))
    only_bools = aiqc.Pipeline.Tabular.make(df_or_path=df.drop(columns="x"), label_column="y", feature_cols_excluded="y")
    assert set(np.unique(only_bools.samples("train")["features"])) == {0.0, 1.0}


def test_nullable_bool_with_missing_values_is_refused(db, row_counts):
    df = pd.DataFrame({"flag": pd.array([True, None, False, True] * 20, dtype="boolean"), "y": ["a", "b"] * 40})
    _refused(row_counts, lambda: aiqc.Pipeline.Tabular.make(df_or_path=df, label_column="y", feature_cols_excluded="y"),
             r"feature_encoders: expected finite values in the numeric columns no encoder claims .*'flag' \(20 NaN of 80 rows\)")


def test_an_unclaimed_datetime_column_is_an_error_that_suggests_numbers(db, row_counts):
    df = messy_frame()
    before = row_counts()
    with pytest.raises(ValidationError, match=r"feature_encoders: expected numeric features; received date/time columns "
                                              r"\['signup'\] \(dtypes \['datetime64\[.*dt.dayofweek.*feature_cols_excluded") as info:
        _make(df, feature_cols_excluded=["churn", "id"])
    assert "OneHotEncoder" not in str(info.value)
    assert row_counts() == before
    as_objects = df.assign(signup=df["signup"].dt.date)  # datetime.date objects: dtype object
    _refused(row_counts, lambda: _make(as_objects, feature_cols_excluded=["churn", "id"]),
             r"received date/time columns \['signup'\] \(dtypes \['object'\]\)")
    durations = df.assign(tenure=df["signup"] - df["signup"].min())
    _refused(row_counts, lambda: _make(durations, feature_cols_excluded=["churn", "id", "signup"]),
             r"received date/time columns \['tenure'\] \(dtypes \['timedelta64")


def test_dates_are_never_claimed_as_categories_by_dtype(db, row_counts):
    df = messy_frame()
    onehot_objects = [dict(sklearn_preprocess=OneHotEncoder(handle_unknown="ignore"), dtypes=["object", "str"]),
                      dict(sklearn_preprocess=IMPUTE_SCALE, columns=["age", "income"])]
    as_objects = df.assign(signup=df["signup"].dt.date)
    _refused(row_counts, lambda: _make(as_objects, feature_cols_excluded=["churn", "id"], feature_encoders=onehot_objects),
             r"feature_encoders\[0\]\['dtypes'\]: expected to claim categories, not dates; received \['object', 'str'\], "
             r"which claims 'signup' \(dtype object\) holding dates.*columns=\['signup'\]")
    as_category = df.assign(signup=df["signup"].astype("category"))
    onehot_category = [dict(sklearn_preprocess=OneHotEncoder(handle_unknown="ignore"), dtypes=["category"]), *onehot_objects]
    _refused(row_counts, lambda: _make(as_category, feature_cols_excluded=["churn", "id"], feature_encoders=onehot_category),
             r"feature_encoders\[0\]\['dtypes'\]: expected to claim categories, not dates; received \['category'\]")
    as_text = df.assign(signup=df["signup"].dt.strftime("%Y-%m-%d"))
    with pytest.warns(UserWarning, match=r"very many categories: 'signup'"), \
            pytest.warns(UserWarning, match=r"claims 'signup' by dtype \['object', 'str'\], but its text reads as dates "
                                         r"\(e.g. '20\d\d-\d\d-\d\d'\).*parse_dates=\['signup'\]"):
        _make(as_text, feature_cols_excluded=["churn", "id"], feature_encoders=onehot_objects)
    named = [dict(sklearn_preprocess=OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                  columns=["signup", "city"]), onehot_objects[1]]
    _make(as_objects, feature_cols_excluded=["churn", "id"], feature_encoders=named)  # named on purpose: allowed


def test_one_hot_encoding_a_date_column_named_on_purpose_still_warns(db):
    df = messy_frame()
    df["signup"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(len(df)) % 6, unit="D")  # 6 dates only
    encoders = [dict(sklearn_preprocess=OneHotEncoder(handle_unknown="ignore"), columns=["signup", "city"]),
                dict(sklearn_preprocess=IMPUTE_SCALE, columns=["age", "income"])]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _make(df, feature_cols_excluded=["churn", "id"], feature_encoders=encoders)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert messages == ["feature_encoders[0] (OneHotEncoder): one-hot encodes the date columns ['signup']; each date "
                        "becomes a category that new dates never match. Derive numbers from them instead (e.g. day of "
                        "week, days since a reference date), or exclude them."]


def test_dates_in_a_csv_can_be_read_as_dates(db, tmp_path, row_counts):
    from aiqc.data.frames import read_path
    from aiqc.data.plan import plan_dataset

    path = tmp_path / "messy.csv"
    df = messy_frame(120)
    df.to_csv(path, index=False)
    assert read_path(path)["signup"].dtype == object or pd.api.types.is_string_dtype(read_path(path)["signup"])
    parsed = read_path(path, parse_dates=["signup"])
    assert pd.api.types.is_datetime64_any_dtype(parsed["signup"])
    assert (parsed["signup"].dt.date == df["signup"].dt.date).all()
    plan = plan_dataset(str(path), parse_dates="signup")
    assert pd.api.types.is_datetime64_any_dtype(plan.df["signup"]) and plan.source == str(path)
    from_frame = plan_dataset(df.assign(signup=df["signup"].dt.strftime("%Y-%m-%d")), parse_dates=["signup"])
    assert pd.api.types.is_datetime64_any_dtype(from_frame.df["signup"])
    before = row_counts()
    with pytest.raises(ValidationError, match=r"parse_dates: expected columns of the data .*received unknown \['signed'\]"):
        plan_dataset(str(path), parse_dates=["signed"])
    with pytest.raises(ValidationError, match=r"parse_dates: expected columns of dates; received 'city', which holds a value"):
        plan_dataset(str(path), parse_dates=["city"])
    with pytest.raises(ValidationError, match=r"parse_dates: expected None, a column name or a list of column names; received 3"):
        plan_dataset(str(path), parse_dates=3)
    assert row_counts() == before
    # the existing call shape, verbatim: dates stay text, excluded here
    splitset = _make(str(path), feature_cols_excluded=["churn", "id", "signup"])
    assert splitset.label.dataset.dtypes["signup"] in ("object", "str")


@pytest.mark.skipif("parse_dates" not in __import__("inspect").signature(aiqc.Pipeline.Tabular.make).parameters,
                    reason="Pipeline.Tabular.make has no parse_dates parameter yet")
def test_pipeline_make_reads_dates_with_parse_dates(db, tmp_path):
    path = tmp_path / "messy.csv"
    messy_frame(120).to_csv(path, index=False)
    splitset = _make(str(path), parse_dates=["signup"])
    assert splitset.label.dataset.dtypes["signup"].startswith("datetime64")


def test_one_hot_encoding_very_many_categories_warns(db):
    df = messy_frame()
    encoders = [dict(sklearn_preprocess=OneHotEncoder(handle_unknown="ignore"), columns=["id", "city"]),
                dict(sklearn_preprocess=IMPUTE_SCALE, columns=["age", "income"])]
    with pytest.warns(UserWarning, match=r"feature_encoders\[0\] \(OneHotEncoder\): one-hot encodes columns with very "
                                         r"many categories: 'id' \(360 distinct values in 360 training rows\)") as record:
        _make(df, feature_cols_excluded=["churn", "signup"], feature_encoders=encoders)
    assert not any("'city'" in str(w.message) for w in record)
    in_a_pipeline = [dict(sklearn_preprocess=make_pipeline(SimpleImputer(strategy="most_frequent"),
                                                           OneHotEncoder(handle_unknown="ignore")), columns=["id"]),
                     encoders[1], dict(sklearn_preprocess=OneHotEncoder(), columns=["city"])]
    with pytest.warns(UserWarning, match=r"'id' \(360 distinct values"):
        _make(df, feature_cols_excluded=["churn", "signup"], feature_encoders=in_a_pipeline)
    capped = [dict(sklearn_preprocess=OneHotEncoder(max_categories=10, handle_unknown="infrequent_if_exist"),
                   columns=["id", "city"]), encoders[1]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _make(df, feature_cols_excluded=["churn", "signup"], feature_encoders=capped)
        _make(df)


# --- 3. any transformer, stored by value --------------------------------------------------------
def test_column_transformer_as_an_encoder(db):
    df = messy_frame()
    columns = ColumnTransformer([("num", IMPUTE_SCALE, ["age", "income"]),
                                 ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"])])
    splitset = _make(df, feature_encoders=[dict(sklearn_preprocess=columns, columns=["age", "income", "city"])])
    encoded = splitset.features_to_pandas("validation", encoded=True)
    assert list(encoded.columns)[:3] == ["num__age", "num__income", "cat__city_Lyon"]
    assert np.isfinite(encoded.to_numpy()).all()


USER_MODULE = '''
"""The user's own encoders, in a module only the notebook's folder can import."""
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class MedianClip(BaseEstimator, TransformerMixin):
    """Fill NaN with the training median, then clip to the training 1st-99th percentiles."""

    def __init__(self, low=1.0, high=99.0):
        self.low, self.high = low, high

    def fit(self, X, y=None):
        values = np.asarray(X, dtype=float)
        self.median_ = np.nanmedian(values, axis=0)
        self.bounds_ = np.nanpercentile(values, [self.low, self.high], axis=0)
        return self

    def transform(self, X):
        values = np.asarray(X, dtype=float).copy()
        rows, columns = np.where(np.isnan(values))
        values[rows, columns] = self.median_[columns]
        return np.clip(values, self.bounds_[0], self.bounds_[1])

    def get_feature_names_out(self, input_features=None):
        return np.asarray(input_features, dtype=object)
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """``my_encoders``, written to tmp_path/notebook and imported from there (as from a notebook's folder)."""
    folder = tmp_path / "notebook"
    folder.mkdir()
    (folder / "my_encoders.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    import my_encoders

    yield my_encoders
    sys.modules.pop("my_encoders", None)


def test_user_encoders_are_stored_by_value_and_load_in_another_directory(db, tmp_path, user_module):
    df = messy_frame()
    encoders = [dict(sklearn_preprocess=OneHotEncoder(handle_unknown="ignore"), columns=["city"]),
                dict(sklearn_preprocess=make_pipeline(user_module.MedianClip(), StandardScaler()), columns=["age", "income"])]
    splitset = _make(df, feature_encoders=encoders, size_validation=None, fold_count=2)
    record = splitset.encoders_for(side="feature")[1]
    assert record.source.startswith("# my_encoders.MedianClip\nclass MedianClip(BaseEstimator, TransformerMixin):")
    here = {"train": splitset.samples("train")["features"], "fold": splitset.samples("validation", fold=1)["features"]}
    assert np.isfinite(here["train"]).all()

    queue = None
    if _has_torch():  # the predict half needs PyTorch
        import fns

        queue = aiqc.Experiment.make(library="pytorch", analysis_type="classification_binary", fn_build=fns.torch_build,
                                     fn_train=fns.torch_train, splitset_id=splitset.id, repeat_count=1,
                                     hyperparameters={"neuron_count": [4], "batch_size": [64], "epoch_count": [1],
                                                      "analysis": ["classification_binary"]})
        queue.run_jobs(progress=False)
        job = queue.jobs.first()
        expected = job.predict(df.head(20))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = textwrap.dedent(f"""
        import json, sys, numpy as np, pandas as pd, aiqc
        assert "my_encoders" not in sys.modules
        try:
            import my_encoders
            raise SystemExit("my_encoders should not be importable here")
        except ImportError:
            pass
        aiqc.setup({str(db)!r})
        splitset = aiqc.Splitset.get_by_id({splitset.id})
        np.save("train.npy", splitset.samples("train")["features"])
        np.save("fold.npy", splitset.samples("validation", fold=1)["features"])
        queue_id = {queue.id if queue is not None else None!r}
        if queue_id is not None:
            job = aiqc.Queue.get_by_id(queue_id).jobs.first()
            df = pd.read_parquet({str(tmp_path / 'rows.parquet')!r})
            job.predict(df).to_json("predicted.json")
    """)
    df.head(20).to_parquet(tmp_path / "rows.parquet")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    np.testing.assert_array_equal(np.load(elsewhere / "train.npy"), here["train"])
    np.testing.assert_array_equal(np.load(elsewhere / "fold.npy"), here["fold"])
    if queue is not None:
        predicted = pd.read_json(elsewhere / "predicted.json")
        assert predicted["prediction"].tolist() == expected["prediction"].tolist()
        np.testing.assert_allclose(predicted["probability_yes"].to_numpy(), expected["probability_yes"].to_numpy(), rtol=1e-5)


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def test_encoders_of_installed_packages_are_pickled_by_reference():
    from aiqc.orm.base import PickleField

    assert PickleField.user_objects(make_pipeline(SimpleImputer(), StandardScaler()).fit([[1.0], [2.0]])) == []
    assert PickleField.user_objects(FunctionTransformer(np.log1p)) == []


# --- YAML: the steps form, and export -----------------------------------------------------------------
def test_yaml_steps_build_a_pipeline():
    from aiqc.spec import _encoder

    entry = {"steps": [{"class": "sklearn.impute.SimpleImputer", "params": {"strategy": "median"}},
                       {"class": "sklearn.preprocessing.StandardScaler"}], "columns": ["age", "income"]}
    built = _encoder(entry, "data.feature_encoders[1]")
    pipeline = built["sklearn_preprocess"]
    assert isinstance(pipeline, Pipeline) and built["columns"] == ["age", "income"]
    assert [type(s).__name__ for _, s in pipeline.steps] == ["SimpleImputer", "StandardScaler"]
    assert pipeline.steps[0][1].strategy == "median"
    nested = _encoder({"steps": [{"steps": [{"class": "sklearn.impute.SimpleImputer"}]},
                                 {"class": "sklearn.preprocessing.StandardScaler", "params": {}}]}, "data.label_encoder")
    assert isinstance(nested["sklearn_preprocess"].steps[0][1], Pipeline)
    bad = {
        r"data.feature_encoders\[0\]: expected \{class: .*\} or \{steps: .*received": {"params": {}},
        r"data.feature_encoders\[0\]: expected \{class: .*received \{'class'": {"class": "x.Y", "steps": []},
        r"data.feature_encoders\[0\].steps: expected a non-empty list": {"steps": []},
        r"data.feature_encoders\[0\].steps\[1\].class: expected an importable class .*received 'sklearn.nope.Scaler'":
            {"steps": [{"class": "sklearn.impute.SimpleImputer"}, {"class": "sklearn.nope.Scaler"}]},
        r"data.feature_encoders\[0\].steps\[0\].dtypes: expected keys among \['class', 'params'\]":
            {"steps": [{"class": "sklearn.impute.SimpleImputer", "dtypes": ["float64"]}]},
        r"data.feature_encoders\[0\].params: expected keys among \['columns', 'dtypes', 'steps'\]":
            {"steps": [{"class": "sklearn.impute.SimpleImputer"}], "params": {}},
        r"data.feature_encoders\[0\].steps\[0\].params: .*unexpected keyword":
            {"steps": [{"class": "sklearn.impute.SimpleImputer", "params": {"strategi": "median"}}]},
    }
    for message, entry in bad.items():
        with pytest.raises(ValidationError, match=message):
            _encoder(entry, "data.feature_encoders[0]")


def test_a_pipeline_encoder_round_trips_through_yaml(db, tmp_path, row_counts):
    pytest.importorskip("torch")
    pytest.importorskip("omegaconf")
    import fns

    median_scale = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    splitset = _make(messy_frame(), feature_encoders=[dict(sklearn_preprocess=OneHotEncoder(handle_unknown="ignore"),
                                                           dtypes=["str"]),
                                                      dict(sklearn_preprocess=median_scale, dtypes=["float64"])],
                     label_encoder=dict(sklearn_preprocess=make_pipeline(OrdinalEncoder())))
    queue = aiqc.Experiment.make(library="pytorch", analysis_type="classification_binary", fn_build=fns.torch_build,
                                 fn_train=fns.torch_train, splitset_id=splitset.id, repeat_count=1,
                                 hyperparameters={"neuron_count": [4], "batch_size": [64], "epoch_count": [1]})
    path = queue.to_config(tmp_path / "exported.yaml")
    spec = yaml.safe_load(path.read_text())
    assert spec["data"]["feature_encoders"][1] == {
        "steps": [{"class": "sklearn.impute.SimpleImputer",
                   "params": {"add_indicator": False, "copy": True, "fill_value": None, "keep_empty_features": False,
                              "missing_values": spec["data"]["feature_encoders"][1]["steps"][0]["params"]["missing_values"],
                              "strategy": "median"}},
                  {"class": "sklearn.preprocessing.StandardScaler",
                   "params": {"copy": True, "with_mean": True, "with_std": True}}],
        "dtypes": ["float64"]}
    assert spec["data"]["label_encoder"]["steps"][0]["class"] == "sklearn.preprocessing.OrdinalEncoder"
    rebuilt = aiqc.Experiment.from_config(path)
    other = rebuilt.experiment.splitset
    fitted = other.encoders_for(side="feature")[1].fitted
    assert isinstance(fitted, Pipeline) and fitted.steps[0][1].strategy == "median"
    np.testing.assert_allclose(other.samples("train")["features"], splitset.samples("train")["features"])
    np.testing.assert_array_equal(other.samples("test")["labels"], splitset.samples("test")["labels"])

    log = _make(messy_frame(), feature_encoders=[dict(sklearn_preprocess=OneHotEncoder(), columns=["city"]),
                                                 dict(sklearn_preprocess=IMPUTE_SCALE, columns=["age"]),
                                                 dict(sklearn_preprocess=make_pipeline(SimpleImputer(),
                                                                                       FunctionTransformer(np.log1p)),
                                                      columns=["income"])])
    unexportable = aiqc.Experiment.make(library="pytorch", analysis_type="classification_binary",
                                        fn_build=fns.torch_build, fn_train=fns.torch_train, splitset_id=log.id,
                                        hyperparameters={"neuron_count": [4], "batch_size": [64], "epoch_count": [1]})
    before = row_counts()
    with pytest.raises(ValidationError, match=r"queue: expected encoder parameters that a YAML spec can hold .*"
                                              r"FunctionTransformer\) has \['func'\]"):
        unexportable.to_config(tmp_path / "unexportable.yaml")
    assert row_counts() == before


# --- 4. predict as users call it -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A database with one finished PyTorch job on the messy frame: the city one-hot (unknown
    cities ignored), age and income imputed and scaled, member and score passing through."""
    pytest.importorskip("torch")
    import fns
    from aiqc.orm import database_proxy
    from aiqc.orm.dataset import _read_frame

    path = tmp_path_factory.mktemp("messy") / "messy.sqlite3"
    aiqc.setup(path)
    splitset = _make(messy_frame())
    queue = aiqc.Experiment.make(library="pytorch", analysis_type="classification_binary", fn_build=fns.torch_build,
                                 fn_train=fns.torch_train, splitset_id=splitset.id, repeat_count=1,
                                 hyperparameters={"neuron_count": [4], "batch_size": [64], "epoch_count": [2],
                                                  "analysis": ["classification_binary"]})
    queue.run_jobs(progress=False)
    database_proxy.obj.close()
    database_proxy.initialize(None)
    _read_frame.cache_clear()
    return path, queue.id


@pytest.fixture
def job(trained):
    from aiqc.database import clear_caches
    from aiqc.orm import database_proxy

    aiqc.setup(trained[0])
    yield aiqc.Queue.get_by_id(trained[1]).jobs.first()
    database_proxy.obj.close()
    database_proxy.initialize(None)
    clear_caches()


def test_predict_takes_frames_with_excluded_columns_dicts_and_lists_of_dicts(job):
    df = messy_frame().iloc[100:110]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        full = job.predict(df)  # still holds id, signup (excluded) and churn (the label)
    assert list(full.columns) == ["prediction", "probability_no", "probability_yes"]
    assert list(full.index) == list(df.index) and set(full["prediction"]) <= {"yes", "no"}
    records = df.drop(columns=["churn"]).to_dict("records")
    one = job.predict(records[3])
    assert list(one.index) == [0]
    assert one["prediction"].iloc[0] == full["prediction"].iloc[3]  # float32 sums differ by ~1e-7 with the batch size
    np.testing.assert_allclose(one.iloc[0, 1:].to_numpy(float), full.iloc[3, 1:].to_numpy(float), rtol=1e-6)
    many = job.predict(records)
    assert many["prediction"].tolist() == full["prediction"].tolist()
    np.testing.assert_allclose(many["probability_yes"].to_numpy(), full["probability_yes"].to_numpy(), rtol=1e-6)
    python_values = [{"city": "Oslo", "member": True, "age": 31, "income": 42000, "score": 0.5, "id": 7},
                     {"city": "Lyon", "member": False, "age": None, "income": 51000.5, "score": -1}]
    assert len(job.predict(python_values)) == 2  # ints for floats, None for an imputed value


def test_predict_missing_columns_lists_only_those(job):
    df = messy_frame().head(5).drop(columns=["age", "city"])
    with pytest.raises(ValidationError) as info:
        job.predict(df)
    assert str(info.value) == ("df: expected the feature columns the model was trained on; received a DataFrame "
                               "missing ['city', 'age'].")
    with pytest.raises(ValidationError, match=r"df: expected only the feature columns \(the label and the excluded "
                                              r"columns may be there too, and are ignored\); received extra columns \['note'\]"):
        job.predict(messy_frame().head(5).assign(note="x"))
    with pytest.raises(ValidationError, match=r"df: expected a pandas DataFrame of raw rows, a dict \(one row"):
        job.predict([1, 2])
    with pytest.raises(ValidationError, match=r"df: expected one value per column in each row dict; received lists in \['age'\]"):
        job.predict({"city": "Oslo", "member": True, "age": [30, 40], "income": 1.0, "score": 0.0})
    with pytest.raises(ValidationError, match=r"df\['member'\]: expected dtype bool as in the training data; received"):
        job.predict(messy_frame().head(5).assign(member="sometimes"))


def test_predict_warns_about_unknown_categories(job):
    df = messy_frame().head(6)
    df.loc[[1, 4], "city"] = ["Atlantis", "Atlantis"]
    with pytest.warns(UserWarning, match=r"df: column 'city' holds categories the encoder never saw in training: "
                                         r"\['Atlantis'\] \(rows \[1, 4\]\); OneHotEncoder\(handle_unknown='ignore'\)"):
        out = job.predict(df)
    assert len(out) == 6


def test_predict_refuses_rows_that_encode_to_nan_or_inf(job):
    df = messy_frame().iloc[10:16].copy()
    df.loc[12, "score"] = np.nan
    df.loc[14, "score"] = np.inf
    with pytest.raises(ValidationError, match=r"df: expected rows that encode to finite numbers; received rows \[12, 14\] "
                                              r"with NaN/inf in the encoded columns \['score'\]; missing raw values in "
                                              r"\['score'\].*SimpleImputer"):
        job.predict(df)
    df = messy_frame().iloc[10:16].copy()
    df["member"] = df["member"].astype(object)
    df.loc[11, "member"] = None  # a bool that is missing
    with pytest.raises(ValidationError, match=r"received rows \[11\] with NaN/inf in the encoded columns \['member'\]"):
        job.predict(df)
    imputed = messy_frame().iloc[10:16].assign(age=np.nan)  # age goes through an imputer: fine
    assert len(job.predict(imputed)) == 6


def test_predict_reports_the_encoders_with_records(job):
    """A regression guard: predictions on the split's raw rows equal the stored ones."""
    rows, stored, probabilities = job.predictions("test")
    df = messy_frame().iloc[rows]
    out = job.predict(df)
    names = np.array(job.queue.experiment.splitset.class_names(), dtype=object)
    assert out["prediction"].tolist() == names[stored.ravel().astype(int)].tolist()
    json.dumps(out.to_dict("list"))  # plain values


def test_check_rows_casts_what_it_can_and_refuses_what_would_be_wrong():
    from aiqc.inference import check_rows

    dtypes = {"n": "int64", "x": "float64", "flag": "bool", "when": "datetime64[us]", "city": "str"}
    columns = list(dtypes)
    rows = [{"n": 2.0, "x": 1, "flag": 1, "when": "2024-03-01", "city": "Oslo", "id": 5},
            {"n": 3, "x": None, "flag": False, "when": "2024-03-02", "city": "Lyon", "id": 6}]
    frame = check_rows(rows, columns, dtypes, "churn", excluded=["id"])
    assert list(frame.columns) == columns and frame["n"].dtype == np.int64 and frame["x"].dtype == np.float64
    assert frame["x"].isna().tolist() == [False, True] and frame["flag"].tolist() == [True, False]
    assert pd.api.types.is_datetime64_any_dtype(frame["when"])
    for change, message in [
        ({"n": 2.5}, r"df\['n'\]: expected integers as in the training data; received \[2.5\]"),
        ({"n": None}, r"df\['n'\]: expected integers without missing values; received NaN"),
        ({"flag": "yes"}, r"df\['flag'\]: expected dtype bool as in the training data"),
        ({"when": "soon"}, r"df\['when'\]: expected dates \(dtype datetime64\[us\]\) as in the training data"),
        ({"x": "many"}, r"df\['x'\]: expected dtype float64 as in the training data"),
        ({"city": 3}, r"df\['city'\]: expected dtype str as in the training data; received int64"),
    ]:
        with pytest.raises(ValidationError, match=message):
            check_rows([{**rows[0], **change}], columns, dtypes, "churn", excluded=["id"])


def test_an_encoder_class_of_a_script_or_notebook_is_stored_with_its_source(tmp_path):
    """A class defined in ``__main__`` (a script, a notebook) loads elsewhere, and its source is kept."""
    database = tmp_path / "main.sqlite3"
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        import numpy as np, aiqc
        from sklearn.base import BaseEstimator, TransformerMixin
        from sklearn.preprocessing import OneHotEncoder
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_messy_data import messy_frame


        class Halve(BaseEstimator, TransformerMixin):
            def fit(self, X, y=None):
                self.median_ = np.nanmedian(np.asarray(X, dtype=float), axis=0)
                return self

            def transform(self, X):
                values = np.asarray(X, dtype=float)
                return np.where(np.isnan(values), self.median_, values) / 2


        aiqc.setup({str(database)!r})
        splitset = aiqc.Pipeline.Tabular.make(
            df_or_path=messy_frame(120), label_column="churn", feature_cols_excluded=["churn", "id", "signup"],
            feature_encoders=[dict(sklearn_preprocess=OneHotEncoder(), columns=["city"]),
                              dict(sklearn_preprocess=Halve(), columns=["age", "income"])], random_state=0)
        np.save("features.npy", splitset.samples("test")["features"])
    """))
    subprocess.run([sys.executable, str(script)], cwd=tmp_path, check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    reader = textwrap.dedent(f"""
        import numpy as np, aiqc
        aiqc.setup({str(database)!r})
        splitset = aiqc.Splitset.get()
        np.save("features.npy", splitset.samples("test")["features"])
        print(splitset.encoders_for(side="feature")[1].source)
    """)
    out = subprocess.run([sys.executable, "-c", reader], cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    np.testing.assert_array_equal(np.load(elsewhere / "features.npy"), np.load(tmp_path / "features.npy"))
    assert out.stdout.startswith("# __main__.Halve\nclass Halve(BaseEstimator, TransformerMixin):")
