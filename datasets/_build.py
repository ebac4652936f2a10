"""Regenerate the bundled sample files from data that ships inside scikit-learn.

    python datasets/_build.py

Nothing is downloaded: every source below is bundled with scikit-learn's wheel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets

HERE = Path(__file__).parent


def _frame(bunch, label: str, names=None) -> pd.DataFrame:
    df = pd.DataFrame(bunch.data, columns=[c.replace(" (cm)", "").replace(" ", "_") for c in bunch.feature_names])
    target = bunch.target
    df[label] = np.asarray(bunch.target_names)[target] if names is None and hasattr(bunch, "target_names") else target
    return df


def main() -> None:
    iris = _frame(datasets.load_iris(), "species")
    iris.to_csv(HERE / "iris.tsv", sep="\t", index=False)

    # 10 jittered copies: 1,500 rows for folds; noise is 2% of each feature's spread.
    rng = np.random.default_rng(0)
    copies = []
    for _ in range(10):
        noisy = iris.copy()
        for column in iris.columns[:-1]:
            noisy[column] = (noisy[column] + rng.normal(0, 0.02 * iris[column].std(), len(iris))).round(3)
        copies.append(noisy)
    pd.concat(copies, ignore_index=True).to_csv(HERE / "iris_10x.tsv", sep="\t", index=False)

    cancer = datasets.load_breast_cancer()
    df = pd.DataFrame(cancer.data, columns=[c.replace(" ", "_") for c in cancer.feature_names])
    df["diagnosis"] = np.asarray(cancer.target_names)[cancer.target]
    df.to_csv(HERE / "breast_cancer.csv", index=False)

    diabetes = datasets.load_diabetes(scaled=False)
    df = pd.DataFrame(diabetes.data, columns=diabetes.feature_names)
    df["progression"] = diabetes.target
    df.to_csv(HERE / "diabetes.csv", index=False)

    wine = datasets.load_wine()
    df = pd.DataFrame(wine.data, columns=[c.replace("/", "_") for c in wine.feature_names])
    df["cultivar"] = np.asarray(["class_0", "class_1", "class_2"])[wine.target]
    df.to_parquet(HERE / "wine.parquet", index=False)


if __name__ == "__main__":
    main()
