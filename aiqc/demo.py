"""``python -m aiqc.demo``: a small experiment on the bundled iris data, end to end.

Stores the data, splits and encoders, trains a PyTorch grid (2 x 2 combinations x 2
repeats), prints the best job and its metrics, and writes the HTML report. Uses the
default database unless ``--db`` (or ``AIQC_DB``) says otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path
from typing import Any


def fn_build(features_shape: tuple[int, ...], label_shape: tuple[int, ...], **hp: Any) -> Any:
    """The demo's model: a torch.nn.Sequential with one hidden layer of ``hp["neuron_count"]`` units."""
    import torch.nn as nn

    return nn.Sequential(
        nn.Linear(features_shape[0], hp["neuron_count"]), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(hp["neuron_count"], label_shape[0]),
    )


def fn_train(model: Any, loser: Any, optimizer: Any, samples_train: dict, samples_evaluate: dict | None,
             **hp: Any) -> Any:
    """The demo's training: ``aiqc.torch_fit`` with the job's epoch count and batch size; the trained model."""
    import aiqc

    return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                          epoch_count=hp["epoch_count"], batch_size=hp["batch_size"])


def main(argv: list[str] | None = None) -> int:
    """Run the demo end to end; the exit status (1 when a job failed)."""
    parser = argparse.ArgumentParser(prog="python -m aiqc.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="SQLite file to use (default: AIQC_DB or the user data directory)")
    parser.add_argument("--report", default="aiqc_demo_report.html", help="where to write the HTML report")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import aiqc
    from aiqc import datum
    from aiqc.analysis import AnalysisType
    from aiqc.exceptions import DataReusedNotice

    out = sys.stdout.write
    path = aiqc.setup(args.db)
    with warnings.catch_warnings(record=True) as reused:  # a second demo finds the iris data stored already
        warnings.simplefilter("always", DataReusedNotice)
        splitset = aiqc.Pipeline.Tabular.make(
            df_or_path=datum.to_pandas("iris.tsv"),
            label_column="species",
            label_encoder=dict(sklearn_preprocess=OneHotEncoder()),
            feature_cols_excluded="species",
            feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])],
            size_test=0.22,
            size_validation=0.12,
            fold_count=None,
            bin_count=None,
        )
    out(f"database   {path}\n")
    for warning in reused:
        if issubclass(warning.category, DataReusedNotice):
            out(f"dataset    id={splitset.label.dataset_id}: iris was stored by an earlier run; reused, not stored again\n")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    out(f"splitset   id={splitset.id}: {splitset.count_train} train / {splitset.count_validation} validation / "
        f"{splitset.count_test} test rows of iris, stratified; encoders fit on the train rows\n")

    queue = aiqc.Experiment.make(
        library="pytorch", analysis_type=AnalysisType.CLASSIFICATION_MULTI, fn_build=fn_build, fn_train=fn_train,
        fn_lose=None, fn_optimize=None, fn_predict=None, repeat_count=2,
        hyperparameters={"neuron_count": [12, 24], "batch_size": [8], "epoch_count": [30, 60]},
        splitset_id=splitset.id, hide_test=False, name="iris demo", tags=["demo", "iris"],
    )
    summary = queue.run_jobs()
    out(f"queue      {summary}\n")

    best = queue.best_job()
    metric, split = queue.objective
    out(f"best job   id={best.id} {best.hyperparameters} (by {split} {metric})\n")
    metrics = best.metrics()
    names = list(next(iter(metrics.values())))
    widths = {n: max(11, len(n) + 2) for n in names}
    out("           " + "".join(f"{n:>{widths[n]}}" for n in names) + "\n")
    for split, values in metrics.items():
        out(f"{split:>11}" + "".join(f"{values[n]:>{widths[n]}.4f}" for n in names) + "\n")
    report = queue.report(Path(args.report))
    out(f"report     {report}\n")
    return 0 if summary.failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
