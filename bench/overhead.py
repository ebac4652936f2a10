"""Benchmark: the cost of aiqc's bookkeeping on top of training.

    python bench/overhead.py [--library keras pytorch] [--rounds 2]

The same 16 small iris fits (neuron_count [12, 24] x batch_size [3, 5] x epoch_count
[15, 30] x 2 repeats) run through ``queue.run_jobs()`` and in a bare loop, in one process,
alternating (bare, aiqc, bare, aiqc, ...) so machine drift hits both alike. Imports and a
warm-up fit happen before any timing. Two bare loops are timed:

- fit only: fn_build + default loss/optimizer + fn_train (what "training itself" costs);
- fit + evaluate: the same, then predict the three splits and compute the same metrics
  (aiqc's, equal to scikit-learn's: what a user writes by hand to get the numbers aiqc stores).

Target (issue #4): aiqc / bare-loop ratio <= 1.05.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

GRID = {"neuron_count": [12, 24], "batch_size": [3, 5], "epoch_count": [15, 30]}
REPEATS = 2


def _functions(library: str):
    import fns  # the test suite's reference-usage functions

    return fns.FUNCTIONS[library]


def bare_loop(library: str, splitset, evaluate: bool) -> float:
    from aiqc.analysis import AnalysisType
    from aiqc.backends import get_backend

    analysis = AnalysisType.CLASSIFICATION_MULTI
    backend = get_backend(library)
    build, train = _functions(library)
    arrays = {s: splitset.samples(s) for s in ("train", "validation", "test")}
    start = time.perf_counter()
    for seed, values in enumerate(itertools.product(*GRID.values(), range(REPEATS))):
        hp = dict(zip(GRID, values[:-1]), analysis=analysis.value)
        backend.configure(threads=os.cpu_count(), seed=seed)
        tr, ev = (backend.to_samples(arrays[s]["features"], arrays[s]["labels"], analysis) for s in ("train", "validation"))
        model = backend.prepare_model(build(arrays["train"]["features"].shape[1:], arrays["train"]["labels"].shape[1:], **hp))
        model = train(model, backend.default_loss(analysis, arrays["train"]["labels"].shape),
                      backend.default_optimizer(model, analysis, hp), tr, ev, **hp)
        if evaluate:
            for split, samples in arrays.items():
                p = backend.predict(model, samples["features"], analysis)
                analysis.spec.compute_metrics(samples["labels"].argmax(1), p.predictions, p.probabilities,
                                              labels=[0, 1, 2])
    return time.perf_counter() - start


def with_aiqc(library: str, splitset) -> float:
    import aiqc

    build, train = _functions(library)
    queue = aiqc.Experiment.make(library=library, analysis_type="classification_multi", fn_build=build,
                                 fn_train=train, hyperparameters={**GRID, "analysis": ["classification_multi"]},
                                 repeat_count=REPEATS, splitset_id=splitset.id)
    start = time.perf_counter()
    summary = queue.run_jobs(progress=False)
    seconds = time.perf_counter() - start
    assert summary.complete == 16, summary
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", nargs="+", default=["keras", "pytorch"])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import logging

    logging.disable(logging.WARNING)
    import aiqc
    from fns import reference_make
    from aiqc import datum

    with tempfile.TemporaryDirectory() as folder:
        aiqc.setup(Path(folder) / "overhead.sqlite3")
        splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
        print(f"overhead benchmark: 16 iris fits per run, {args.rounds} alternating rounds, {os.cpu_count()} cores")
        for library in args.library:
            bare_loop(library, splitset, evaluate=True)  # imports + warm-up, untimed
            times = {"fit": [], "fit+evaluate": [], "aiqc": []}
            for _ in range(args.rounds):
                times["fit"].append(bare_loop(library, splitset, evaluate=False))
                times["aiqc"].append(with_aiqc(library, splitset))
                times["fit+evaluate"].append(bare_loop(library, splitset, evaluate=True))
            fit, evaluated, ours = (sum(times[k]) for k in ("fit", "fit+evaluate", "aiqc"))
            print(f"  {library:<8} bare fit {fit / args.rounds:6.2f} s | bare fit+evaluate {evaluated / args.rounds:6.2f} s"
                  f" | run_jobs {ours / args.rounds:6.2f} s   (per run)")
            print(f"  {library:<8} ratio run_jobs / bare fit = {ours / fit:.3f};  "
                  f"run_jobs / bare fit+evaluate = {ours / evaluated:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
