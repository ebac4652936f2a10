"""Benchmark: Pipeline.Tabular.make against a hand-written pandas + scikit-learn split and
fit_transform of the same data, measured in the same run.

    python bench/pipeline.py [--rows 1000000] [--repeats 3]

Each measurement runs in a fresh child process that builds the DataFrame (19 float64
features + a 3-class string label), so timings and memory peaks do not leak between runs.
Peak memory is the growth of the process's peak RSS during the call (Linux VmHWM, reset
just before it), divided by the DataFrame's in-memory size.

Targets (issue #3): time ratio <= 1.2, peak RSS growth <= 2.5x the DataFrame.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = 20
SIZE_TEST, SIZE_VALIDATION = 0.22, 0.12


def make_frame(rows: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(rows, COLUMNS - 1)), columns=[f"f{i:02d}" for i in range(COLUMNS - 1)])
    df["label"] = rng.choice(np.array(["alpha", "beta", "gamma"]), rows)
    return df


def hand_written(df, workdir: str) -> None:
    """What a user writes without aiqc: two stratified splits, fit on train, transform all."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features, label = df.drop(columns="label"), df[["label"]]
    x_rest, x_test, y_rest, y_test = train_test_split(
        features, label, test_size=SIZE_TEST, stratify=label["label"], random_state=0)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=SIZE_VALIDATION / (1 - SIZE_TEST), stratify=y_rest["label"], random_state=1)
    scaler = StandardScaler()
    scaler.fit_transform(x_train), scaler.transform(x_val), scaler.transform(x_test)
    onehot = OneHotEncoder()
    onehot.fit_transform(y_train), onehot.transform(y_val), onehot.transform(y_test)


def with_aiqc(df, workdir: str) -> None:
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    import aiqc

    aiqc.setup(Path(workdir) / "bench.sqlite3")
    aiqc.Pipeline.Tabular.make(
        df_or_path=df, label_column="label", label_encoder=dict(sklearn_preprocess=OneHotEncoder()),
        feature_cols_excluded="label",
        feature_encoders=[dict(sklearn_preprocess=StandardScaler(), dtypes=["float64"])],
        size_test=SIZE_TEST, size_validation=SIZE_VALIDATION, random_state=0)


METHODS = {"hand_written": hand_written, "aiqc": with_aiqc}


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(method: str, rows: int) -> dict:
    import gc

    df = make_frame(rows)
    import sklearn.model_selection  # noqa: F401  (import costs are not what we measure)
    import sklearn.preprocessing  # noqa: F401
    import aiqc.pipeline  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    gc.collect()
    with tempfile.TemporaryDirectory() as workdir:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to now
        before = _rss_kib("VmRSS")
        start = time.perf_counter()
        METHODS[method](df, workdir)
        seconds = time.perf_counter() - start
        peak = _rss_kib("VmHWM")
    frame_bytes = int(df.memory_usage(deep=True, index=True).sum())
    return dict(method=method, seconds=seconds, peak_growth_bytes=(peak - before) * 1024, frame_bytes=frame_bytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=list(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows)))
        return

    results: dict[str, list[dict]] = {m: [] for m in METHODS}
    for _ in range(args.repeats):
        for method in METHODS:  # interleaved, so drift on a noisy machine hits both alike
            out = subprocess.run([sys.executable, __file__, "--child", method, "--rows", str(args.rows)],
                                 capture_output=True, text=True, check=True)
            results[method].append(json.loads(out.stdout.strip().splitlines()[-1]))

    frame_mb = results["aiqc"][0]["frame_bytes"] / 1e6
    print(f"pipeline benchmark: {args.rows:,} rows x {COLUMNS} columns ({frame_mb:,.0f} MB in memory), "
          f"median of {args.repeats} runs each")
    medians = {}
    for method, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        growth = max(r["peak_growth_bytes"] for r in runs) / runs[0]["frame_bytes"]
        medians[method] = seconds
        print(f"  {method:<13} {seconds:7.2f} s   peak RSS growth {growth:4.2f}x the DataFrame "
              f"(runs: {', '.join(format(r['seconds'], '.2f') for r in runs)})")
    ratio = medians["aiqc"] / medians["hand_written"]
    growth = max(r["peak_growth_bytes"] for r in results["aiqc"]) / results["aiqc"][0]["frame_bytes"]
    print(f"ratio aiqc / hand-written: {ratio:.2f} (target <= 1.2)")
    print(f"aiqc peak RSS growth: {growth:.2f}x the DataFrame (target <= 2.5)")


if __name__ == "__main__":
    main()
