"""Benchmark: Pipeline.Image.make against a hand-written numpy + scikit-learn split and scale
of the same images, measured in the same run.

    python bench/image.py [--images 10000] [--size 28] [--repeats 3]

Each measurement runs in a fresh child process that builds the images (uint8, 28 x 28, one
channel, 10 classes), so timings and memory peaks do not leak between runs. Peak memory is the
growth of the process's peak RSS during the call (Linux VmHWM, reset just before it), divided
by the image array's size. Imports, and Arrow's allocator arenas (about 9 MB kept from its first
use in a process, whatever the data), are paid before measuring, by both sides.

What each side does: two stratified splits (test 22%, validation 12%), a MinMaxScaler per
channel fit on the training images, and the label one-hot encoded on the training labels.
The hand-written side transforms every split to floats, as a script feeding a model would;
aiqc stores the images in its database (part by part), and transforms the held-out images
once, a chunk at a time, to check the encoder on them (the encoding for training happens
when a job runs).

Targets (issue #16): time ratio <= 1.5, peak RSS growth <= 2.5x the image array.
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

SIZE_TEST, SIZE_VALIDATION = 0.22, 0.12
CLASSES = 10


def make_images(count: int, size: int):
    import numpy as np

    rng = np.random.default_rng(0)
    labels = rng.integers(0, CLASSES, count)
    images = rng.integers(0, 200, (count, size, size, 1), dtype=np.uint8)
    images[np.arange(count), labels % size, :, 0] = 255  # a class-dependent bright row
    return images, labels


def hand_written(images, labels, workdir: str) -> None:
    """What a user writes without aiqc: two stratified splits, fit on train, transform all."""
    import numpy as np
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder

    rows = np.arange(len(images))
    rest, test = train_test_split(rows, test_size=SIZE_TEST, stratify=labels, random_state=0)
    train, validation = train_test_split(rest, test_size=SIZE_VALIDATION / (1 - SIZE_TEST), stratify=labels[rest],
                                         random_state=1)
    channels = images.shape[-1]
    scaler = MinMaxScaler().fit(images[train].reshape(-1, channels))
    for split in (train, validation, test):
        chunk = images[split]
        scaler.transform(chunk.reshape(-1, channels)).reshape(chunk.shape).astype(np.float32)
    onehot = OneHotEncoder().fit(labels[train].reshape(-1, 1))
    for split in (train, validation, test):
        onehot.transform(labels[split].reshape(-1, 1))


def with_aiqc(images, labels, workdir: str) -> None:
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder

    import aiqc

    aiqc.setup(Path(workdir) / "bench.sqlite3")
    aiqc.Pipeline.Image.make(images, labels=labels, label_encoder=dict(sklearn_preprocess=OneHotEncoder()),
                             feature_encoders=dict(sklearn_preprocess=MinMaxScaler()), size_test=SIZE_TEST,
                             size_validation=SIZE_VALIDATION, random_state=0)


METHODS = {"hand_written": hand_written, "aiqc": with_aiqc}


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(method: str, count: int, size: int) -> dict:
    import gc

    images, labels = make_images(count, size)
    import sklearn.model_selection  # noqa: F401  (import costs are not what we measure)
    import sklearn.preprocessing  # noqa: F401
    import aiqc.pipeline  # noqa: F401
    import aiqc.data.images  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import pandas as pd

    from aiqc.data.frames import iter_parquet_parts

    # Arrow's allocator (mimalloc) keeps ~9 MB of arenas from its first use in a process, whatever
    # the data: a one-time cost like an import, paid before measuring by both sides alike.
    for _ in iter_parquet_parts(pd.DataFrame({"warm": [0, 1]})):
        pass
    gc.collect()
    with tempfile.TemporaryDirectory() as workdir:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM) to now
        before = _rss_kib("VmRSS")
        start = time.perf_counter()
        METHODS[method](images, labels, workdir)
        seconds = time.perf_counter() - start
        peak = _rss_kib("VmHWM")
    return dict(method=method, seconds=seconds, peak_growth_bytes=(peak - before) * 1024, array_bytes=images.nbytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=list(METHODS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.images, args.size)))
        return

    results: dict[str, list[dict]] = {m: [] for m in METHODS}
    for _ in range(args.repeats):
        for method in METHODS:  # interleaved, so drift on a noisy machine hits both alike
            out = subprocess.run([sys.executable, __file__, "--child", method, "--images", str(args.images),
                                  "--size", str(args.size)], capture_output=True, text=True, check=True)
            results[method].append(json.loads(out.stdout.strip().splitlines()[-1]))

    array_mb = results["aiqc"][0]["array_bytes"] / 1e6
    print(f"image benchmark: {args.images:,} images of {args.size}x{args.size}x1 uint8 ({array_mb:,.1f} MB), "
          f"median of {args.repeats} runs each")
    medians = {}
    for method, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        growth = max(r["peak_growth_bytes"] for r in runs) / runs[0]["array_bytes"]
        medians[method] = seconds
        print(f"  {method:<13} {seconds:7.3f} s   peak RSS growth {growth:4.2f}x the array "
              f"(runs: {', '.join(format(r['seconds'], '.3f') for r in runs)})")
    ratio = medians["aiqc"] / medians["hand_written"]
    growth = max(r["peak_growth_bytes"] for r in results["aiqc"]) / results["aiqc"][0]["array_bytes"]
    print(f"ratio aiqc / hand-written: {ratio:.2f} (target <= 1.5)")
    print(f"aiqc peak RSS growth: {growth:.2f}x the image array (target <= 2.5)")


if __name__ == "__main__":
    main()
