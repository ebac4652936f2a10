"""Bad input: a ValidationError naming the parameter, the expectation and the value,
raised before anything is written (every table keeps its row count)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import aiqc
from aiqc.exceptions import ValidationError

from fns import reference_make


def _iris():
    from aiqc import datum

    return datum.to_pandas("iris.tsv")


def _with(**changes):
    return lambda df: reference_make(df, **changes)


def _frame(mutate):
    return lambda df: reference_make(mutate(df.copy()))


def _nan_label(df):
    df.loc[3, "species"] = None
    return df


def _single_class(df):
    df["species"] = "setosa"
    return df


def _text_feature(df):
    df["note"] = "x"
    return df


def _duplicate_columns(df):
    return pd.concat([df, df[["sepal_length"]]], axis=1)


def _numbered_columns(df):
    df.columns = range(df.shape[1])
    return df


SCALER = dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])

CASES = {
    "unknown label column": (_with(label_column="specis"), r"label_column: expected one of the columns .*received 'specis'"),
    "label column not a string": (_with(label_column=["species"]), r"label_column: expected the name of one column"),
    "label among features": (_with(feature_cols_excluded=None), r"feature_cols_excluded: expected to exclude the label column 'species'"),
    "unknown excluded column": (_with(feature_cols_excluded=["species", "petal"]), r"feature_cols_excluded: .*received unknown \['petal'\]"),
    "every column excluded": (_with(feature_cols_excluded=list(_iris().columns)), r"feature_cols_excluded: expected at least one feature"),
    "NaN in label": (_frame(_nan_label), r"label_column: expected a label without missing values; received 'species' with 1 NaN"),
    "single-class label": (_frame(_single_class), r"label_column: expected a label with at least 2 distinct values.*'setosa'"),
    "size_test above 1": (_with(size_test=1.3), r"size_test: expected a fraction between 0 and 1 \(exclusive\); received 1.3"),
    "size_test zero": (_with(size_test=0), r"size_test: expected a fraction between 0 and 1 \(exclusive\); received 0"),
    "size_test a string": (_with(size_test="0.2"), r"size_test: expected a fraction .*received '0.2'"),
    "size_validation negative": (_with(size_validation=-0.1), r"size_validation: expected None or a fraction .*received -0.1"),
    "sizes sum to 1": (_with(size_test=0.5, size_validation=0.5), r"size_test \+ size_validation: expected a sum below 1 .*received 0.5 \+ 0.5 = 1"),
    "split too small for every class": (_with(size_test=0.01), r"size_test: gives 2 test rows, fewer than the 3 classes"),
    "fold_count below 2": (_with(size_validation=None, fold_count=1), r"fold_count: expected None or an integer >= 2; received 1"),
    "fold_count above smallest class": (_with(size_validation=None, fold_count=60), r"fold_count: expected at most \d+, the training rows of the smallest class .*received 60"),
    "folds with size_validation": (_with(fold_count=3), r"size_validation: expected None when fold_count is set"),
    "bin_count on categorical label": (_with(bin_count=3), r"bin_count: expected None for the categorical label 'species'"),
    "bin_count below 2": (_with(bin_count=1), r"bin_count: expected None or an integer >= 2; received 1"),
    "non-transformer": (_with(feature_encoders=[dict(sklearn_preprocess="scaler", dtypes=["float64"])]),
                        r"feature_encoders\[0\]\['sklearn_preprocess'\]: expected a scikit-learn transformer .*received 'scaler'"),
    "transformer class, not instance": (_with(label_encoder=dict(sklearn_preprocess=OneHotEncoder)),
                                        r"label_encoder\['sklearn_preprocess'\]: expected a transformer instance such as OneHotEncoder\(\); received the class OneHotEncoder"),
    "both dtypes and columns": (_with(feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"], columns=["sepal_length"])]),
                                r"feature_encoders\[0\]: expected exactly one of 'dtypes' or 'columns'; received both"),
    "neither dtypes nor columns": (_with(feature_encoders=[dict(sklearn_preprocess=StandardScaler())]),
                                   r"feature_encoders\[0\]: expected exactly one of 'dtypes' or 'columns'; received neither"),
    "unknown encoder column": (_with(feature_encoders=[dict(sklearn_preprocess=StandardScaler(), columns=["sepal"])]),
                               r"feature_encoders\[0\]\['columns'\]: expected feature columns; received \['sepal'\]"),
    "unknown dtype name": (_with(feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=["flot64"])]),
                           r"feature_encoders\[0\]\['dtypes'\]: expected pandas dtype names .*received 'flot64'"),
    "dtype claiming no column": (_with(feature_encoders=[SCALER, dict(sklearn_preprocess=StandardScaler(), dtypes=["int64"])]),
                                 r"feature_encoders\[1\]\['dtypes'\]: .*received \['int64'\], which claims no column"),
    "overlapping columns": (_with(feature_encoders=[SCALER, dict(sklearn_preprocess=StandardScaler(), columns=["sepal_length"])]),
                            r"feature_encoders\[1\]\['columns'\]: expected columns not already encoded; received \['sepal_length'\], already claimed by feature_encoders\[0\]"),
    "unknown encoder key": (_with(feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtype=["float64"])]),
                            r"feature_encoders\[0\]: expected keys .*received unknown keys \['dtype'\]"),
    "label encoder with columns": (_with(label_encoder=dict(sklearn_preprocess=OneHotEncoder(), columns=["species"])),
                                   r"label_encoder: expected only the key 'sklearn_preprocess'"),
    "string feature left unencoded": (_frame(_text_feature), r"feature_encoders: expected an encoder for every non-numeric feature; received none for \['note'\]"),
    "encoder that cannot fit": (_with(feature_encoders=[dict(sklearn_preprocess=StandardScaler(), columns=["sepal_length"])], feature_cols_excluded="species",
                                      label_encoder=dict(sklearn_preprocess=StandardScaler())),
                                r"label_encoder \(StandardScaler\): expected a transformer that can fit columns \['species'\]"),
    "empty DataFrame": (lambda df: reference_make(df.iloc[0:0]), r"df_or_path: expected a DataFrame with at least one row and one column; received one of shape \(0, 5\)"),
    "duplicate column names": (_frame(_duplicate_columns), r"df_or_path: expected unique column names; received duplicates \['sepal_length'\]"),
    "non-string column names": (_frame(_numbered_columns), r"df_or_path: expected string column names; received \[0, 1, 2, 3, 4\]"),
    "not a DataFrame": (lambda df: reference_make(df.to_numpy()), r"df_or_path: expected a pandas DataFrame or a file path; received array"),
    "missing file": (lambda df: reference_make("/nonexistent/iris.csv"), r"df_or_path: expected an existing file; received '/nonexistent/iris.csv'"),
    "unsupported extension": (lambda df: reference_make("iris.xlsx"), r"df_or_path: expected a DataFrame or a path ending in .csv, .tsv or .parquet; received 'iris.xlsx'"),
    "random_state negative": (_with(random_state=-1), r"random_state: expected None or an integer in \[0, 2\*\*31 - 2\]; received -1"),
    "name not a string": (_with(name=3), r"name: expected None or a string; received 3"),
}


@pytest.fixture
def populated(db):
    """A database that already holds one pipeline, so 'unchanged' is not trivially zero."""
    reference_make(_iris())


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_is_refused_before_any_write(case, populated, row_counts):
    call, message = CASES[case]
    before = row_counts()
    with pytest.raises(ValidationError, match=message):
        call(_iris())
    assert row_counts() == before


def test_unreadable_file(tmp_path, populated, row_counts):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 not really parquet")
    before = row_counts()
    with pytest.raises(ValidationError, match=r"df_or_path: expected a readable parquet file; received '.*broken.parquet'"):
        reference_make(str(path))
    assert row_counts() == before


def test_encoder_that_cannot_handle_unseen_categories(populated, row_counts):
    from aiqc.data import split
    from aiqc.data.plan import plan_label

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=60), "y": ["a", "b"] * 30, "c": ["k"] * 59 + ["rare"]})
    label = plan_label(df, "y")
    strata = split.make_strata(label.codes, label.classes, label.values, None)
    counts = split.split_counts(len(df), 0.5, None)
    seed = next(s for s in range(100) if 59 in split.split_indices(len(df), counts, strata, s)["test"])
    before = row_counts()
    with pytest.raises(ValidationError, match=r"feature_encoders\[0\] \(OneHotEncoder\): expected an encoder fit on "
                                              r"training rows to transform the held-out rows .*handle_unknown='ignore'"):
        aiqc.Pipeline.Tabular.make(df_or_path=df, label_column="y", feature_cols_excluded="y", size_test=0.5,
                                   feature_encoders=[dict(sklearn_preprocess=OneHotEncoder(), columns=["c"])],
                                   random_state=seed)
    assert row_counts() == before


def test_low_level_api_validates_too(populated, row_counts):
    from aiqc.orm import Dataset, Splitset

    dataset = Dataset.get()
    before = row_counts()
    with pytest.raises(ValidationError, match=r"column: expected one of the columns"):
        dataset.make_label("nope")
    with pytest.raises(ValidationError, match=r"label: expected a Label"):
        Splitset.make("species", dataset.features.get())
    with pytest.raises(ValidationError, match=r"dataframe: expected a pandas DataFrame"):
        Dataset.Tabular.from_pandas([1, 2, 3])
    with pytest.raises(ValidationError, match=r"split: expected 'train', 'validation' or 'test'; received 'valid'"):
        Splitset.get().indices("valid")
    with pytest.raises(ValidationError, match=r"fold: expected None, splitset \d+ has no folds"):
        Splitset.get().indices("train", fold=0)
    assert row_counts() == before
