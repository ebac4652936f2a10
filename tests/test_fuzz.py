"""Property-based hardening (Hypothesis): generated DataFrames and arguments for
``Pipeline.Tabular.make``, ``Experiment.make`` and ``job.predict``.

For every generated input, either an aiqc error (an ``AIQCError``) is raised and every table
keeps its row count, or the result is correct (splits disjoint and covering every row,
stratified, encoders fit, finite samples; queues of the expected size; one prediction per row
with valid classes and probabilities summing to 1). Any other exception escaping is a bug.

One database per module (Hypothesis runs many examples per test, so the function-scoped
``db`` fixture does not fit): row counts are compared before and after each example.
The profile ``aiqc-fuzz`` keeps the default run short and reproducible (``derandomize``);
``HYPOTHESIS_PROFILE=aiqc-fuzz-long`` runs more examples.
"""

from __future__ import annotations

import collections
import math
import os
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, event, given, note, settings
from hypothesis import strategies as st

import aiqc
from aiqc.exceptions import AIQCError, UserFunctionError
from aiqc.states import JobState

settings.register_profile(
    "aiqc-fuzz", max_examples=60, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "aiqc-fuzz-long", max_examples=300, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "aiqc-fuzz"))
if os.environ.get("HYPOTHESIS_PROFILE") not in ("aiqc-fuzz", "aiqc-fuzz-long"):
    PROFILE = settings.get_profile("aiqc-fuzz")

#: test name -> Counter of outcomes ("refused", "accepted"), printed by the last test
CASES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
#: refusals whose message lacks "expected ...; received ..." (house style), by parameter: printed too
STYLE: dict[str, str] = {}


# --- the module's database -----------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_db(tmp_path_factory):
    """One database for the whole module; unbound afterwards."""
    from aiqc.database import clear_caches
    from aiqc.orm import database_proxy

    saved = os.environ.pop("AIQC_DB", None)
    path = aiqc.setup(tmp_path_factory.mktemp("fuzz") / "aiqc.sqlite3")
    yield path
    if database_proxy.obj is not None:
        database_proxy.obj.close()
        database_proxy.initialize(None)
    clear_caches()
    if saved is not None:
        os.environ["AIQC_DB"] = saved


def row_counts() -> dict[str, int]:
    """{table: row count} of every aiqc table."""
    from aiqc.orm import MODELS

    return {model.__name__: model.select().count() for model in MODELS}


def attempt(test: str, call):
    """Run ``call``: an AIQCError must leave every row count unchanged (returns None); any other
    exception escapes (the test fails); otherwise returns ``(result, counts before)``."""
    before = row_counts()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = call()
    except AIQCError as error:
        message = str(error)
        note(f"refused: {type(error).__name__}: {message[:300]}")
        assert row_counts() == before, f"{type(error).__name__} after a write: {message}"
        assert ":" in message[:120], message  # "parameter: ..."
        if not any(word in message for word in ("expected", "received", "needs")):
            STYLE[message.split(":")[0]] = message[:160]  # names the parameter, not expected/received: reported
        CASES[test]["refused"] += 1
        event(f"refused: {type(error).__name__} {message.split(':')[0][:40]}")
        return None
    CASES[test]["accepted"] += 1
    event("accepted")
    return result, before


# --- DataFrames ----------------------------------------------------------------------------
NAMES = st.one_of(
    st.sampled_from(["a", "A", "a ", " a", "é", "日本", "x.y", "x[0]", "", " ", "None", "nan", "0", "col-1",
                     "class", "label", "emoji🙂", "tab\t", "new\nline", "Ａ"]),
    st.text(min_size=0, max_size=6),
)
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
TEXT = st.sampled_from(["x", "y", "z", "", " ", "日本", "None", "nan", "2024-01-01", "a,b", "é"])


def mostly(valid, *invalid):
    """``valid`` about 9 times in 10, else one of the ``invalid`` values (index 5 of 10: not a
    bound, which Hypothesis favours)."""
    return st.sampled_from(range(10)).flatmap(lambda i: st.sampled_from(invalid) if i == 5 else valid)


def _inject(values: list, draw, bad: list) -> list:
    """Sometimes replace a few values with ``bad`` ones (NaN, None, inf...)."""
    if values and draw(st.sampled_from(range(4))) == 2:
        for i in draw(st.lists(st.integers(0, len(values) - 1), max_size=3)):
            values[i] = draw(st.sampled_from(bad))
    return values


@st.composite
def feature_column(draw, n: int) -> pd.Series:
    """A feature column of a random kind, maybe with missing/odd values."""
    kind = draw(st.sampled_from(["float", "float32", "int", "Int64", "bool", "boolean", "object", "string",
                                 "category", "datetime", "constant", "mixed", "Float64", "empty_text"]))
    event(f"feature kind {kind}")
    if kind == "float":
        values = _inject(draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n)), draw,
                         [np.nan, np.inf, -np.inf, None, 1e308])
        return pd.Series(values, dtype="float64")
    if kind == "float32":
        return pd.Series(_inject(draw(st.lists(st.floats(-1e3, 1e3, width=32), min_size=n, max_size=n)), draw,
                                 [np.nan, np.inf]), dtype="float32")
    if kind == "Float64":
        return pd.Series(_inject(draw(st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n)), draw,
                                 [None, np.inf]), dtype="Float64")
    if kind == "int":
        return pd.Series(draw(st.lists(st.integers(-2**40, 2**40), min_size=n, max_size=n)), dtype="int64")
    if kind == "Int64":
        return pd.Series(_inject(draw(st.lists(st.integers(-100, 100), min_size=n, max_size=n)), draw, [None]),
                         dtype="Int64")
    if kind == "bool":
        return pd.Series(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    if kind == "boolean":
        return pd.Series(_inject(draw(st.lists(st.booleans(), min_size=n, max_size=n)), draw, [None]),
                         dtype="boolean")
    if kind in ("object", "string", "category"):
        values = _inject(draw(st.lists(TEXT, min_size=n, max_size=n)), draw, [None, np.nan])
        return pd.Series(values, dtype={"object": object, "string": "string", "category": "category"}[kind])
    if kind == "empty_text":
        return pd.Series([""] * n, dtype=object)
    if kind == "datetime":
        days = draw(st.lists(st.integers(0, 3000), min_size=n, max_size=n))
        return pd.Series(pd.to_datetime("2020-01-01") + pd.to_timedelta(days, unit="D"))
    if kind == "constant":
        return pd.Series([draw(st.sampled_from([0, 1.5, "k", True]))] * n)
    # mixed: numbers and text in one object column
    return pd.Series(draw(st.lists(st.one_of(st.integers(-5, 5), TEXT, st.floats(allow_nan=True)),
                                   min_size=n, max_size=n)), dtype=object)


@st.composite
def label_column(draw, n: int) -> tuple[pd.Series, str]:
    """A label of a random kind: text/int/bool/category classes, or continuous floats, maybe
    with NaN or inf (in any dtype that can hold them)."""
    kind = draw(st.sampled_from(["text", "int", "bool", "category", "float", "float32", "Float64",
                                 "object_float", "category_float", "constant", "Int64"]))
    k = draw(st.integers(1, 4))
    if kind in ("text", "category"):
        values = draw(st.lists(st.sampled_from(["p", "q", "r", "s", "", "日本"][:k + 1]), min_size=n, max_size=n))
        values = _inject(values, draw, [None])
        series = pd.Series(values, dtype=object if kind == "text" else "category")
    elif kind in ("int", "Int64"):
        values = draw(st.lists(st.integers(0, k), min_size=n, max_size=n))
        series = pd.Series(_inject(values, draw, [None]) if kind == "Int64" else values,
                           dtype="int64" if kind == "int" else "Int64")
    elif kind == "bool":
        series = pd.Series(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    elif kind == "constant":
        series = pd.Series(["same"] * n)
    else:
        values = draw(st.lists(st.floats(-100, 100), min_size=n, max_size=n))
        values = _inject(values, draw, [np.nan, np.inf, -np.inf])
        dtype = {"float": "float64", "float32": "float32", "Float64": "Float64", "object_float": object,
                 "category_float": "category"}[kind]
        if kind == "Float64":
            values = [None if isinstance(v, float) and math.isnan(v) else v for v in values]
        series = pd.Series(values, dtype=dtype)
    event(f"label kind {kind}")
    return series, kind


@st.composite
def frames(draw) -> tuple[pd.DataFrame, str, str]:
    """(a DataFrame of 1-40 rows, its label column's name, the label kind)."""
    n = draw(st.one_of(st.integers(1, 40), st.integers(12, 40)))
    width = draw(mostly(st.integers(1, 4), 0))
    names = draw(st.lists(NAMES, min_size=width + 1, max_size=width + 1))
    if draw(st.sampled_from(range(10))) != 5:  # mostly unique names; sometimes exact duplicates
        seen: dict[str, int] = {}
        unique = []
        for name in names:
            seen[name] = seen.get(name, -1) + 1
            unique.append(name if not seen[name] else f"{name}_{seen[name]}")
        names = unique if len(set(unique)) == len(unique) else [f"c{i}" for i in range(len(names))]
    label, kind = draw(label_column(n))
    columns = [label] + [draw(feature_column(n)) for _ in range(width)]
    df = pd.concat([c.reset_index(drop=True) for c in columns], axis=1)
    df.columns = names
    if draw(st.sampled_from(range(20))) == 5:
        df.columns = [0] + names[1:]  # a column name that is not a string
    return df, names[0], kind


# --- arguments of Pipeline.Tabular.make -----------------------------------------------------
def _encoders():
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler

    return dict(
        onehot=OneHotEncoder, onehot_ignore=lambda: OneHotEncoder(handle_unknown="ignore"),
        ordinal=OrdinalEncoder, scaler=StandardScaler, minmax=MinMaxScaler,
        impute_scale=lambda: make_pipeline(SimpleImputer(), StandardScaler()),
        impute_text=lambda: make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"),
                                          OneHotEncoder(handle_unknown="ignore")),
    )


@st.composite
def label_encoders(draw):
    """None, a sensible encoder, or a wrong value."""
    from sklearn.preprocessing import OneHotEncoder

    choice = draw(mostly(st.sampled_from(["none", "onehot", "ordinal", "scaler", "minmax", "onehot_ignore"]),
                         "string", "class", "extra_key", "not_dict"))
    enc = _encoders()
    if choice == "none":
        return None
    if choice in enc:
        return dict(sklearn_preprocess=enc[choice]())
    return {"string": dict(sklearn_preprocess="onehot"), "class": dict(sklearn_preprocess=OneHotEncoder),
            "extra_key": dict(sklearn_preprocess=OneHotEncoder(), dtypes=["object"]),
            "not_dict": OneHotEncoder()}[choice]


@st.composite
def feature_encoders(draw, columns: list):
    """None, one dict, or a list of dicts selecting by dtype or by column (some wrong)."""
    enc = _encoders()
    count = draw(st.integers(0, 3))
    if count == 0:
        return draw(mostly(st.sampled_from([None, []]), "scaler", 3))
    entries = []
    for _ in range(count):
        name = draw(mostly(st.sampled_from(sorted(enc)), "bad"))
        transformer = enc[name]() if name in enc else draw(st.sampled_from(["x", None, 5, object()]))
        how = draw(mostly(st.sampled_from(["dtypes", "columns"]), "both", "neither"))
        dtypes = draw(st.lists(st.sampled_from(["float64", "float32", "int64", "object", "string", "category",
                                                "bool", "number", "floating", "datetime64[ns]", "Float64",
                                                "Int64", "boolean", "nonsense"]), min_size=1, max_size=2))
        cols = draw(st.lists(st.sampled_from(list(columns) + ["missing"]), min_size=1, max_size=2, unique=True)) \
            if columns else ["missing"]
        entry = dict(sklearn_preprocess=transformer)
        if how in ("dtypes", "both"):
            entry["dtypes"] = dtypes
        if how in ("columns", "both"):
            entry["columns"] = cols
        entries.append(entry)
    return entries[0] if len(entries) == 1 and draw(st.booleans()) else entries


BAD_FRACTIONS = (0, 1, 0.0, 1.0, -0.2, 1.3, 1e-300, float("nan"), float("inf"), "0.2", True, None, np.float32(2))
FRACTIONS = mostly(st.floats(0.05, 0.5), *BAD_FRACTIONS)
COUNTS = mostly(st.one_of(st.none(), st.integers(2, 6)), -1, 0, 1, 2.0, "3", True, 10**6, np.int64(3))


@st.composite
def make_arguments(draw):
    """A DataFrame and every argument of Pipeline.Tabular.make, valid or not."""
    df, label, kind = draw(frames())
    features = [c for c in df.columns if c != label]
    excluded = draw(mostly(st.sampled_from(["label", "label_list", "label_and_one"]), "none", "unknown", "int", "all"))
    excluded = {"label": label, "label_list": [label], "none": None, "unknown": [label, "no such column"],
                "int": 5, "all": list(df.columns),
                "label_and_one": [label] + features[:1]}[excluded]
    kwargs = dict(
        df_or_path=df, label_column=draw(mostly(st.just(label), "no such column", None)),
        label_encoder=draw(label_encoders()),
        feature_cols_excluded=excluded,
        feature_encoders=draw(mostly(st.just(fitting_encoders(df, features)),
                                     feature_encoders([c for c in features if isinstance(c, str)]))),
        size_test=draw(FRACTIONS),
        size_validation=draw(mostly(st.one_of(st.none(), st.floats(0.05, 0.4)), *BAD_FRACTIONS)),
        fold_count=draw(COUNTS), bin_count=draw(COUNTS),
        random_state=draw(mostly(st.one_of(st.none(), st.integers(0, 2**31 - 2)), -1, 2**40, 1.5, "1")),
    )
    if kwargs["fold_count"] is not None and draw(st.booleans()):
        kwargs["size_validation"] = None
    return kwargs, kind


def fitting_encoders(df: pd.DataFrame, features: list) -> list[dict] | None:
    """Encoders that claim every feature column of ``df`` by name (dates excluded by the
    caller or refused): impute and scale numbers, impute and one-hot the rest."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if df.columns.duplicated().any():
        return None
    numbers = [c for c in features if isinstance(c, str) and pd.api.types.is_numeric_dtype(df[c].dtype)
               and not pd.api.types.is_bool_dtype(df[c].dtype)]
    others = [c for c in features if isinstance(c, str) and c not in numbers]
    entries = []
    if numbers:
        entries.append(dict(sklearn_preprocess=make_pipeline(SimpleImputer(), StandardScaler()), columns=numbers))
    if others:
        entries.append(dict(sklearn_preprocess=make_pipeline(
            SimpleImputer(strategy="constant", fill_value="missing"), OneHotEncoder(handle_unknown="ignore")),
            columns=others))
    return entries or None


def check_splitset(splitset, kwargs: dict) -> None:
    """What an accepted make promises."""
    df = kwargs["df_or_path"]
    n = len(df)
    rows = {s: splitset.indices(s) for s in splitset.split_names if s != "validation" or not splitset.fold_count}
    together = np.concatenate(list(rows.values()))
    assert len(together) == n and set(together.tolist()) == set(range(n)), "splits overlap or miss rows"
    assert splitset.count_test >= 1 and splitset.count_train >= 1
    label = kwargs["label_column"]
    values = df[label]
    if splitset.stratify == "classes":
        codes, _ = pd.factorize(values, sort=True)
        total = np.bincount(codes)
        for split, split_rows in rows.items():
            held = np.bincount(codes[split_rows], minlength=len(total))
            assert (held >= 1).all(), f"a class missing from {split}"
            share = total * len(split_rows) / n
            assert np.abs(held - share).max() < 1 + 1e-9, f"{split}: {held} rows per class vs shares {share}"
    folds = list(splitset.folds)
    assert len(folds) == (splitset.fold_count or 0)
    if folds:
        held_out = np.concatenate([f.indices_validation for f in folds])
        assert sorted(held_out.tolist()) == sorted(rows["train"].tolist()), "folds do not cover the training rows"
        for fold in folds:
            assert not set(fold.indices_train.tolist()) & set(fold.indices_validation.tolist())
    scopes = [None] + list(range(len(folds)))
    expected_encoders = (kwargs["label_encoder"] is not None) + len(
        [] if kwargs["feature_encoders"] is None else
        [kwargs["feature_encoders"]] if isinstance(kwargs["feature_encoders"], dict) else kwargs["feature_encoders"])
    assert splitset.encoders.count() == expected_encoders * len(scopes)
    for fold in scopes:
        for split in (["train", "validation"] if fold is not None else list(rows)):
            samples = splitset.samples(split, fold)
            count = len(splitset.indices(split, fold))
            assert samples["features"].shape[0] == count == samples["labels"].shape[0]
            assert np.isfinite(samples["features"].astype(np.float64)).all(), "non-finite features"
            if samples["labels"].dtype.kind in "biuf":
                assert np.isfinite(samples["labels"].astype(np.float64)).all(), "non-finite labels"


@PROFILE
@given(case=make_arguments())
def test_pipeline_make(fuzz_db, case):
    """Generated frames and arguments: refused with an aiqc error (nothing written), or correct."""
    kwargs, kind = case
    note(repr({k: v for k, v in kwargs.items() if k != "df_or_path"}))
    note(repr(kwargs["df_or_path"].dtypes.to_dict()))
    outcome = attempt("test_pipeline_make", lambda: aiqc.Pipeline.Tabular.make(**kwargs))
    if outcome is None:
        return
    splitset, _ = outcome
    label = kwargs["df_or_path"][kwargs["label_column"]]
    if kind in ("float", "float32", "Float64", "object_float", "category_float"):
        numbers = pd.to_numeric(pd.Series(np.asarray(label, dtype=object)), errors="coerce")
        assert np.isfinite(numbers.to_numpy(np.float64, na_value=np.nan)).all(), "a non-finite label was accepted"
    check_splitset(splitset, kwargs)


@PROFILE
@given(df=frames(), size=st.floats(0.05, 0.6), seed=st.integers(0, 1000))
def test_pipeline_make_plausible(fuzz_db, df, size, seed):
    """Mostly-valid calls on generated frames (impute and one-hot everything), so that the
    accepted path is exercised often: correct or refused, never another exception."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, label, kind = df
    assume(isinstance(label, str) and not frame.columns.duplicated().any()
           and all(isinstance(c, str) for c in frame.columns))
    kwargs = dict(
        df_or_path=frame, label_column=label,
        label_encoder=dict(sklearn_preprocess=OneHotEncoder()) if kind in ("text", "category", "bool") else None,
        feature_cols_excluded=label,
        feature_encoders=[dict(sklearn_preprocess=make_pipeline(SimpleImputer(), StandardScaler()),
                               dtypes=["number"]),
                          dict(sklearn_preprocess=make_pipeline(
                              SimpleImputer(strategy="constant", fill_value="missing"),
                              OneHotEncoder(handle_unknown="ignore")), dtypes=["object", "string", "category"])],
        size_test=size, bin_count=2 if kind in ("float", "float32", "Float64") else None, random_state=seed,
    )
    kwargs["feature_encoders"] = [e for e in kwargs["feature_encoders"]
                                  if any(encode_dtype_matches(frame[c].dtype, e["dtypes"])
                                         for c in frame.columns if c != label)] or None
    outcome = attempt("test_pipeline_make_plausible", lambda: aiqc.Pipeline.Tabular.make(**kwargs))
    if outcome is not None:
        check_splitset(outcome[0], kwargs)


def encode_dtype_matches(dtype, names: list[str]) -> bool:
    """Whether a feature encoder selecting ``names`` claims a column of ``dtype``."""
    from aiqc.data.encode import _dtype_matches

    return any(_dtype_matches(dtype, name) for name in names)


@PROFILE
@given(dtype=st.sampled_from(["float64", "float32", "Float64", "object", "category"]),
       bad=st.sampled_from([np.inf, -np.inf, np.nan]), position=st.integers(0, 29))
def test_a_non_finite_label_of_any_dtype_is_refused(fuzz_db, dtype, bad, position):
    """inf and NaN in a label are refused whatever its dtype (no label encoder), nothing written."""
    values = [1.0, 2.0, 3.0] * 10
    values[position] = bad
    df = pd.DataFrame({"y": pd.Series(values, dtype=dtype), "x": np.arange(30.0)})
    before = row_counts()
    with pytest.raises(AIQCError, match=r"label_column: expected a label"):
        aiqc.Pipeline.Tabular.make(df, "y", None, "y", None, random_state=0)
    assert row_counts() == before
    CASES["test_a_non_finite_label_of_any_dtype_is_refused"]["refused"] += 1


# --- Experiment.make -------------------------------------------------------------------------
def _need_torch():
    return pytest.importorskip("torch")


def fuzz_build(features_shape, label_shape, **hp):
    """A linear model; its width is the label's plus ``hp['extra']`` (0 unless a test says)."""
    import torch.nn as nn

    layers = [nn.Linear(features_shape[0], hp["neuron_count"]), nn.ReLU(),
              nn.Linear(hp["neuron_count"], hp["out"] + hp.get("extra", 0))]
    if hp.get("sigmoid"):
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def fuzz_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    """aiqc.torch_fit for a few epochs."""
    return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                          epoch_count=hp.get("epoch_count", 2), batch_size=8)


@pytest.fixture(scope="module")
def splitsets(fuzz_db):
    """One splitset per analysis type (multiclass one-hot, binary ordinal, regression binned),
    plus one with folds."""
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    rng = np.random.default_rng(0)
    n = 60
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                       "multi": np.array(["a", "b", "c"])[np.arange(n) % 3],
                       "binary": np.array(["no", "yes"])[np.arange(n) % 2],
                       "value": rng.normal(size=n) * 10})
    made = {}
    for key, label, encoder, extra in (
        ("multi", "multi", OneHotEncoder(), dict(size_validation=0.2)),
        ("binary", "binary", OrdinalEncoder(), dict(size_validation=0.2)),
        ("regression", "value", None, dict(bin_count=3)),
        ("folds", "multi", OneHotEncoder(), dict(fold_count=2)),
    ):
        made[key] = aiqc.Pipeline.Tabular.make(
            df, label, dict(sklearn_preprocess=encoder) if encoder is not None else None,
            [c for c in ("multi", "binary", "value")], None, random_state=1, **extra).id
    return made


ANALYSES = {"multi": ("classification_multi", 3, False), "binary": ("classification_binary", 1, True),
            "regression": ("regression", 1, False), "folds": ("classification_multi", 3, False)}


@st.composite
def experiment_arguments(draw):
    """Every argument of Experiment.make, valid or not."""
    from aiqc.search import Categorical, Int, Search

    key = draw(st.sampled_from(sorted(ANALYSES)))
    analysis, out, sigmoid = ANALYSES[key]
    analysis = draw(mostly(st.just(analysis), "classification_multi", "classification_binary", "regression",
                           "clustering", 3, None))
    grid = {"neuron_count": draw(mostly(st.sampled_from([[2], [2, 3], 4]), [], "x", [None])),
            "out": draw(mostly(st.just(out), out + 1, 0, 2)), "sigmoid": sigmoid}
    extra_key = draw(mostly(st.sampled_from([None, "epoch_count"]), "bad key", "model", "nan"))
    if extra_key == "nan":
        grid["lr"] = [float("nan")]
    elif extra_key is not None:
        grid[extra_key] = [1]
    search = draw(mostly(st.sampled_from([None, "random", "grid_dict", "dist"]), "bad_strategy", "bad_type"))
    if search == "random":
        search = Search(strategy="random", n_trials=draw(st.sampled_from([1, 2, 0, -1, None])), seed=0)
    elif search == "grid_dict":
        search = dict(strategy="grid")
    elif search == "bad_strategy":
        search = dict(strategy="nope", n_trials=2)
    elif search == "bad_type":
        search = "random"
    elif search == "dist":
        grid["neuron_count"] = draw(st.sampled_from([Int(2, 4), Categorical([2, 3])]))
        search = Search(strategy=draw(st.sampled_from(["random", "grid"])), n_trials=2)
    kwargs = dict(
        library=draw(mostly(st.just("pytorch"), "torch", "PyTorch", None, 5)),
        analysis_type=analysis, fn_build=draw(mostly(st.just(fuzz_build), None, "fn", len)),
        fn_train=draw(mostly(st.just(fuzz_train), None, print)), fn_lose=None, fn_optimize=None,
        fn_predict=None, repeat_count=draw(mostly(st.sampled_from([1, 2]), 0, -1, True, 1.5, "2")),
        hyperparameters=draw(mostly(st.just(grid), None, [], {1: [2]})),
        splitset_id=draw(mostly(st.just("SPLIT"), None, True, 10**9, "1", -1)),
        hide_test=draw(mostly(st.booleans(), "yes", None, 1)),
        search=search,
        metric=draw(mostly(st.sampled_from([None, "accuracy", "r2", "f1", "roc_auc"]), "nope", 5)),
        seed=draw(mostly(st.sampled_from([None, 0, 7]), -1, 2**31, 1.5, True)),
        positive_class=draw(mostly(st.sampled_from([None, "yes", "no"]), "a", 3)),
    )
    return key, kwargs


@PROFILE
@given(case=experiment_arguments())
def test_experiment_make(splitsets, case):
    """Generated Experiment.make arguments: refused (nothing written), or a queue of the right size."""
    _need_torch()
    key, kwargs = case
    if kwargs["splitset_id"] == "SPLIT":
        kwargs["splitset_id"] = splitsets[key]
    note(repr(kwargs))
    outcome = attempt("test_experiment_make", lambda: aiqc.Experiment.make(**kwargs))
    if outcome is None:
        return
    queue, before = outcome
    after = row_counts()
    experiment = queue.experiment
    assert after["Experiment"] == before["Experiment"] + 1 and after["Queue"] == before["Queue"] + 1
    folds = max(1, experiment.splitset.fold_count or 0)
    jobs = list(queue.jobs)
    if experiment.search_settings is None or experiment.search_settings.strategy == "grid":
        combos = after["Hyperparamset"] - before["Hyperparamset"]
        assert combos >= 1
        assert len(jobs) == combos * experiment.repeat_count * folds
    assert all(job.state is JobState.QUEUED for job in jobs)
    assert queue.objective is not None


# --- job.predict -------------------------------------------------------------------------------
PREDICT_COLUMNS = ["num", "count", "kind", "flag"]


@pytest.fixture(scope="module")
def trained(fuzz_db):
    """One tiny trained multiclass job over a float (imputed), an int, a text (one-hot,
    unknowns ignored) and a bool feature, with an ID column excluded."""
    _need_torch()
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(3)
    n = 60
    df = pd.DataFrame({
        "num": np.where(np.arange(n) % 7 == 0, np.nan, rng.normal(size=n)),
        "count": rng.integers(0, 10, size=n),
        "kind": np.array(["red", "green", "blue"])[np.arange(n) % 3],
        "flag": np.arange(n) % 2 == 0,
        "id": np.arange(n),
        "species": np.array(["setosa", "versicolor", "virginica"])[rng.integers(0, 3, size=n)],
    })
    splitset = aiqc.Pipeline.Tabular.make(
        df, "species", dict(sklearn_preprocess=OneHotEncoder()), ["species", "id"],
        [dict(sklearn_preprocess=make_pipeline(SimpleImputer(), StandardScaler()), dtypes=["float64"]),
         dict(sklearn_preprocess=OneHotEncoder(handle_unknown="ignore"), dtypes=["object"])],
        size_test=0.2, size_validation=0.2, random_state=0)
    queue = aiqc.Experiment.make(
        library="pytorch", analysis_type="classification_multi", fn_build=fuzz_build, fn_train=fuzz_train,
        fn_lose=None, fn_optimize=None, fn_predict=None, repeat_count=1,
        hyperparameters={"neuron_count": [4], "out": [3], "epoch_count": [2]}, splitset_id=splitset.id,
        hide_test=False, seed=0)
    queue.run_jobs()
    job = queue.jobs.first()
    assert job.state is JobState.COMPLETE, job.error
    return job, splitset.class_names()


VALUES = {
    "num": st.one_of(st.floats(-10, 10), st.sampled_from([None, float("nan"), float("inf"), "1.5", "x", True, 10**30])),
    "count": st.one_of(st.integers(-5, 20), st.sampled_from([None, 1.0, 1.5, "3", "x", float("inf"), 2**70, False])),
    "kind": st.one_of(st.sampled_from(["red", "green", "blue", "purple", "", None, 3, 1.5, True, "日本"])),
    "flag": st.sampled_from([True, False, 0, 1, None, "yes", 2, 1.0, float("nan")]),
    "id": st.integers(0, 10),
    "species": st.sampled_from(["setosa", "unknown", None]),
    "extra": st.integers(),
}


@st.composite
def predict_rows(draw):
    """A DataFrame, a dict or a list of dicts of raw rows: maybe missing or extra columns,
    NaN, wrong types, unseen categories; sometimes not rows at all."""
    shape = draw(mostly(st.sampled_from(["frame", "dict", "list", "tuple"]), "empty_list", "not_rows"))
    if shape == "not_rows":
        return draw(st.sampled_from([None, 5, "num", [1, 2], [{"num": 1}, 3], np.zeros((2, 4))]))
    if shape == "empty_list":
        return []
    columns = list(PREDICT_COLUMNS)
    if draw(st.sampled_from(range(10))) == 5:
        columns.remove(draw(st.sampled_from(PREDICT_COLUMNS)))
    columns += draw(st.lists(st.sampled_from(["id", "species", "extra"]), max_size=2, unique=True))
    n = draw(st.integers(1 if shape == "dict" else 0, 1 if shape == "dict" else 6))
    valid = draw(st.sampled_from(range(3))) != 1
    rows = []
    for _ in range(n):
        row = {}
        for column in columns:
            if valid and column in PREDICT_COLUMNS:
                row[column] = draw({"num": st.floats(-3, 3), "count": st.integers(0, 9),
                                    "kind": st.sampled_from(["red", "green", "blue"]), "flag": st.booleans()}[column])
            else:
                row[column] = draw(VALUES[column])
        rows.append(row)
    if shape == "dict":
        return rows[0]
    if shape in ("list", "tuple"):
        return rows if shape == "list" else tuple(rows)
    frame = pd.DataFrame(rows, columns=columns)
    if draw(st.booleans()) and len(frame):
        frame.index = draw(st.lists(st.sampled_from([5, "a", 7.5, -1]), min_size=len(frame), max_size=len(frame)))
    return frame


@PROFILE
@given(rows=predict_rows())
def test_predict(trained, rows):
    """Generated rows: refused with an aiqc error, or one valid prediction per row."""
    job, classes = trained
    note(repr(rows))
    outcome = attempt("test_predict", lambda: job.predict(rows))
    if outcome is None:
        return
    result, before = outcome
    assert row_counts() == before, "predict wrote to the database"
    expected = len(rows) if isinstance(rows, (pd.DataFrame, list, tuple)) else 1
    assert len(result) == expected
    if isinstance(rows, pd.DataFrame):
        assert list(result.index) == list(rows.index)
    assert result["prediction"].isin(classes).all()
    probabilities = result[[f"probability_{c}" for c in classes]].to_numpy(np.float64)
    assert np.isfinite(probabilities).all() and (probabilities >= 0).all() and (probabilities <= 1).all()
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


# --- user functions that return something unusable: the job FAILS, naming the function ----------
def lose_none(**hp):
    """An fn_lose that forgets to return."""
    return None


def optimize_string(model, **hp):
    """An fn_optimize returning something that is not an optimizer."""
    return "adam"


def optimize_none(**hp):
    """An fn_optimize that forgets to return."""
    return None


def predict_argmax(model, samples_predict):
    """An fn_predict reading any width of outputs."""
    import torch

    with torch.no_grad():
        out = model(samples_predict["features"])
    return out.argmax(dim=1), torch.softmax(out, dim=1)


def build_growing(features_shape, label_shape, **hp):
    """A model whose width changes after the first build (at make): 3 outputs, then 5."""
    import torch.nn as nn

    build_growing.calls = getattr(build_growing, "calls", 0) + 1
    return nn.Linear(features_shape[0], 3 if build_growing.calls == 1 else 5)


@pytest.mark.parametrize("functions, names", [
    (dict(fn_lose=lose_none), ["fn_lose", "None"]),
    (dict(fn_optimize=optimize_string), ["fn_optimize", "optimizer", "'adam'"]),
    (dict(fn_optimize=optimize_none), ["fn_optimize", "optimizer", "None"]),
    (dict(fn_predict=predict_argmax, extra=2), ["fn_build", "5", "3"]),
    (dict(fn_build=build_growing), ["fn_build", "5", "3"]),
])
def test_bad_user_function_output_fails_the_job_naming_it(splitsets, functions, names):
    """A bad return value of a user function fails the job with a UserFunctionError naming it,
    not with a deep traceback from the library."""
    _need_torch()
    functions = dict(functions)
    extra = functions.pop("extra", 0)
    build_growing.calls = 0
    hp = {"neuron_count": [2], "out": [3], "epoch_count": [1]}
    if extra:
        hp["extra"] = [extra]
    kwargs = dict(library="pytorch", analysis_type="classification_multi", fn_build=fuzz_build, fn_train=fuzz_train,
                  fn_lose=None, fn_optimize=None, fn_predict=None, repeat_count=1, hyperparameters=hp,
                  splitset_id=splitsets["multi"], hide_test=False, seed=0)
    kwargs.update(functions)
    queue = aiqc.Experiment.make(**kwargs)
    with pytest.warns(RuntimeWarning, match="FAILED"):
        queue.run_jobs()
    job = queue.jobs.first()
    assert job.state is JobState.FAILED
    last = job.error.strip().splitlines()[-1]
    assert last.startswith(f"{UserFunctionError.__module__}.{UserFunctionError.__name__}") or \
        last.startswith(UserFunctionError.__name__), job.error
    for name in names:
        assert name in last, last
    CASES["test_bad_user_function_output"]["failed as expected"] += 1


def test_zz_case_counts():
    """How many generated cases ran, per test and outcome (printed; `pytest -rP` shows it)."""
    total = sum(sum(c.values()) for c in CASES.values())
    for test, counter in sorted(CASES.items()):
        print(f"{test}: {sum(counter.values())} cases {dict(counter)}")
    print(f"total: {total} cases; no exception other than AIQCError escaped")
    for parameter, message in sorted(STYLE.items()):
        print(f"message without expected/received: {message}")
    assert total > 0 or not CASES
