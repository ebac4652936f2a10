"""``python -m aiqc.demo``: run the data pipeline on the bundled iris data and show what
was stored. Uses the default database unless ``--db`` (or ``AIQC_DB``) says otherwise."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aiqc.demo", description=__doc__)
    parser.add_argument("--db", help="SQLite file to use (default: AIQC_DB or the user data directory)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")

    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import aiqc
    from aiqc import datum

    path = aiqc.setup(args.db)
    df = datum.to_pandas("iris.tsv")
    splitset = aiqc.Pipeline.Tabular.make(
        df_or_path=df,
        label_column="species",
        label_encoder=dict(sklearn_preprocess=OneHotEncoder()),
        feature_cols_excluded="species",
        feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])],
        size_test=0.22,
        size_validation=0.12,
        fold_count=None,
        bin_count=None,
    )
    dataset, label = splitset.label.dataset, splitset.label
    out = sys.stdout.write
    out(f"database     {path}\n")
    out(f"dataset      id={dataset.id}  {dataset.row_count} rows x {dataset.column_count} columns  "
        f"sha256={dataset.sha256[:12]}…  {dataset.stored_bytes:,} bytes of parquet\n")
    out(f"label        {label.column!r}  classes={label.classes}\n")
    out(f"features     {splitset.feature.columns}\n")
    out(f"splitset     id={splitset.id}  train={splitset.count_train}  validation={splitset.count_validation}  "
        f"test={splitset.count_test}  stratified by {splitset.stratify}  random_state={splitset.random_state}\n")
    for encoder in splitset.encoders_for():
        out(f"encoder      {encoder.side:<8} {encoder.class_path.rsplit('.', 1)[-1]:<15} on {encoder.columns} "
            f"-> {len(encoder.output_columns)} column(s), fit on {splitset.count_train} training rows\n")
    train = splitset.samples("train")
    out(f"samples      train features {train['features'].shape}, labels {train['labels'].shape} (encoded)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
