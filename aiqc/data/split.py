"""Stratified train/validation/test splits and k folds, as sorted row-index arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aiqc.exceptions import ValidationError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Strata:
    """What rows are stratified by: class codes, quantile-bin codes, or nothing."""

    codes: np.ndarray | None  # one int per row, or None for an unstratified split
    names: list  # the class values / bin labels, for messages
    kind: str  # "classes", "bins" or "none"

    @property
    def counts(self) -> np.ndarray:
        return np.bincount(self.codes) if self.codes is not None else np.array([])


def make_strata(values: np.ndarray, categorical: bool, bin_count: int | None, column: str) -> Strata:
    """Codes to stratify by. Categorical (and integer) labels are stratified by class;
    a continuous label by ``bin_count`` quantile bins, or not at all."""
    if bin_count is not None:
        import pandas as pd

        codes, edges = pd.qcut(values, q=bin_count, labels=False, retbins=True, duplicates="drop")
        codes = np.asarray(codes, dtype=np.int64)
        names = [f"[{lo:.4g}, {hi:.4g}]" for lo, hi in zip(edges[:-1], edges[1:])]
        return Strata(codes, names, "bins")
    if categorical:
        names, codes = np.unique(values, return_inverse=True)
        return Strata(codes.astype(np.int64), list(names), "classes")
    return Strata(None, [], "none")


def split_counts(n: int, size_test: float, size_validation: float | None) -> dict[str, int]:
    test = max(1, int(round(size_test * n)))
    validation = max(1, int(round(size_validation * n))) if size_validation else 0
    return {"train": n - test - validation, "validation": validation, "test": test}


def check_splits_hold_strata(strata: Strata, counts: dict[str, int], column: str) -> None:
    """Every split must be able to hold every class (or bin) at least once."""
    if strata.codes is None:
        for split, count in counts.items():
            if split != "validation" or count:
                if count < 1:
                    raise ValidationError(f"size_{split}: leaves no {split} rows; expected at least 1.")
        return
    per_class = strata.counts
    n_groups = len(per_class)
    word = "classes" if strata.kind == "classes" else "quantile bins"
    used = {s: c for s, c in counts.items() if s != "validation" or c}
    for split, count in used.items():
        if count < n_groups:
            parameter = "size_test" if split == "test" else "size_validation" if split == "validation" else "size_test + size_validation"
            raise ValidationError(
                f"{parameter}: gives {count} {split} rows, fewer than the {n_groups} {word} of label "
                f"{column!r}; expected at least one row per class in every split. "
                "Use a larger fraction or more data."
            )
    smallest = int(per_class.min())
    if smallest < len(used):
        name = strata.names[int(per_class.argmin())]
        raise ValidationError(
            f"label_column: {word[:-1] if strata.kind == 'classes' else 'bin'} {name!r} of {column!r} has "
            f"{smallest} row(s); expected at least {len(used)} so that each of the {len(used)} splits holds it."
        )


def split_indices(
    n: int, counts: dict[str, int], strata: Strata, seed: int
) -> dict[str, np.ndarray | None]:
    """Sorted, disjoint row indices per split, covering all ``n`` rows."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(n)
    codes = strata.codes
    rest, test = train_test_split(
        rows, test_size=counts["test"], stratify=codes, random_state=seed
    )
    validation = None
    if counts["validation"]:
        rest_codes = codes[rest] if codes is not None else None
        rest, validation = train_test_split(
            rest, test_size=counts["validation"], stratify=rest_codes, random_state=seed + 1
        )
        validation = np.sort(validation)
    return {"train": np.sort(rest), "validation": validation, "test": np.sort(test)}


def check_fold_count(fold_count: int, strata: Strata, train_rows: np.ndarray, column: str) -> None:
    if len(train_rows) < fold_count:
        raise ValidationError(
            f"fold_count: expected at most the {len(train_rows)} training rows; received {fold_count}."
        )
    if strata.codes is None:
        return
    per_class = np.bincount(strata.codes[train_rows], minlength=len(strata.names))
    smallest = int(per_class.min())
    if smallest < fold_count:
        name = strata.names[int(per_class.argmin())]
        raise ValidationError(
            f"fold_count: expected at most {smallest}, the training rows of the smallest "
            f"{'class' if strata.kind == 'classes' else 'bin'} ({name!r} of {column!r}); received {fold_count}."
        )


def fold_indices(
    train_rows: np.ndarray, strata: Strata, fold_count: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``fold_count`` pairs of (fold-train rows, fold-held-out rows), both sorted dataset rows.
    Every training row is held out by exactly one fold."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if strata.codes is None:
        splitter = KFold(n_splits=fold_count, shuffle=True, random_state=seed)
        pairs = splitter.split(train_rows)
    else:
        splitter = StratifiedKFold(n_splits=fold_count, shuffle=True, random_state=seed)
        pairs = splitter.split(train_rows, strata.codes[train_rows])
    return [(np.sort(train_rows[a]), np.sort(train_rows[b])) for a, b in pairs]
