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
        """Rows per class (or bin); empty for an unstratified split."""
        return np.bincount(self.codes, minlength=len(self.names)) if self.codes is not None else np.array([])


def make_strata(codes: np.ndarray, classes: list | None, values: np.ndarray | None,
                bin_count: int | None) -> Strata:
    """Codes to stratify by. A label with ``classes`` (categorical or integer) is stratified
    by class (``codes``: each row's class index); a continuous label by ``bin_count``
    quantile bins of its ``values``, or not at all."""
    if bin_count is not None:
        import pandas as pd

        bins, edges = pd.qcut(values, q=bin_count, labels=False, retbins=True, duplicates="drop")
        names = [f"[{lo:.4g}, {hi:.4g}]" for lo, hi in zip(edges[:-1], edges[1:])]
        return Strata(np.asarray(bins, dtype=np.int64), names, "bins")
    if classes is not None:
        return Strata(codes, list(classes), "classes")
    return Strata(None, [], "none")


def split_counts(n: int, size_test: float, size_validation: float | None) -> dict[str, int]:
    """Rows per split (train, validation, test) of ``n`` rows; test (and validation, when asked
    for) get at least one row, train the rest."""
    test = max(1, int(round(size_test * n)))
    validation = max(1, int(round(size_validation * n))) if size_validation else 0
    return {"train": n - test - validation, "validation": validation, "test": test}


def check_splits_hold_strata(strata: Strata, counts: dict[str, int], column: str) -> None:
    """Every split must be able to hold every class (or bin) at least once."""
    used = {s: c for s, c in counts.items() if s != "validation" or c}
    if strata.codes is None:
        return
    per_class = strata.counts
    n_groups = len(per_class)
    word = "classes" if strata.kind == "classes" else "quantile bins"
    for split, count in used.items():
        if count < n_groups:
            parameter = {"test": "size_test", "validation": "size_validation"}.get(split, "size_test + size_validation")
            raise ValidationError(
                f"{parameter}: gives {count} {split} rows, fewer than the {n_groups} {word} of label "
                f"{column!r}; expected at least one row per class in every split. "
                "Use a larger fraction or more data."
            )
    smallest = int(per_class.min())
    if smallest < len(used):
        name = strata.names[int(per_class.argmin())]
        hint = " For a continuous integer label, pass bin_count." if strata.kind == "classes" else ""
        raise ValidationError(
            f"label_column: {'class' if strata.kind == 'classes' else 'bin'} {name!r} of {column!r} has "
            f"{smallest} row(s); expected at least {len(used)} so that each of the {len(used)} splits holds it.{hint}"
        )


def _allocate(per_class: np.ndarray, total: int, available: np.ndarray) -> np.ndarray:
    """Split ``total`` rows among classes in proportion to ``per_class`` (largest
    remainder), giving every class at least one row when it has one available."""
    exact = per_class * (total / per_class.sum())
    take = np.minimum(np.floor(exact).astype(np.int64), available)
    order = np.argsort(-(exact - take), kind="stable")
    for k in order[: total - take.sum()]:
        take[k] += 1
    for k in np.flatnonzero((take == 0) & (available > 0)):
        donor = int(np.argmax(take))
        if take[donor] > 1:
            take[donor] -= 1
            take[k] += 1
    return take


def split_indices(n: int, counts: dict[str, int], strata: Strata, seed: int) -> dict[str, np.ndarray | None]:
    """Sorted, disjoint row indices per split, covering all ``n`` rows.

    Rows are shuffled once and grouped by stratum (stable sort keeps the shuffle within a
    group); each split takes its quota of every group, so class shares are kept within
    one row. O(n), with no per-class Python loop over rows.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if strata.codes is None:
        test = order[: counts["test"]]
        validation = order[counts["test"] : counts["test"] + counts["validation"]]
        train = order[counts["test"] + counts["validation"] :]
    else:
        codes = strata.codes
        grouped = order[np.argsort(codes[order], kind="stable")]
        per_class = np.bincount(codes, minlength=len(strata.names))
        starts = np.concatenate([[0], np.cumsum(per_class)[:-1]])
        test_take = _allocate(per_class, counts["test"], per_class)
        validation_take = (_allocate(per_class, counts["validation"], per_class - test_take)
                           if counts["validation"] else np.zeros_like(per_class))
        position = np.arange(n) - np.repeat(starts, per_class)  # rank of each row within its group
        group = np.repeat(np.arange(len(per_class)), per_class)
        in_test = position < test_take[group]
        in_validation = ~in_test & (position < (test_take + validation_take)[group])
        test, validation = grouped[in_test], grouped[in_validation]
        train = grouped[~(in_test | in_validation)]
    return {
        "train": np.sort(train),
        "validation": np.sort(validation) if counts["validation"] else None,
        "test": np.sort(test),
    }


def check_fold_count(fold_count: int, strata: Strata, train_rows: np.ndarray, column: str) -> None:
    """Raise ValidationError unless the training rows (of every class or bin) number at least ``fold_count``."""
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


def fold_indices(train_rows: np.ndarray, strata: Strata, fold_count: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``fold_count`` pairs of (fold-train rows, fold-held-out rows), both sorted dataset rows.
    Every training row is held out by exactly one fold."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if strata.codes is None:
        pairs = KFold(n_splits=fold_count, shuffle=True, random_state=seed).split(train_rows)
    else:
        splitter = StratifiedKFold(n_splits=fold_count, shuffle=True, random_state=seed)
        pairs = splitter.split(train_rows, strata.codes[train_rows])
    return [(np.sort(train_rows[a]), np.sort(train_rows[b])) for a, b in pairs]
