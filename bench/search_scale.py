"""Benchmark: does a sampled search stay flat? The framework's cost per trial of a long
random search, early and late.

    python bench/search_scale.py [--trials 300] [--window 50] [--baseline | --no-baseline]

A random search of ``--trials`` trials (one job each, one worker, in this process) whose
fn_train trains nothing: a tiny ``nn.Linear`` on iris that records three epochs with
``aiqc.record_epoch``. A trial's framework cost is the time from the end of one fn_train
call to the start of the next: recording the job, sampling and adding the next trial,
claiming its job and preparing it. The mean of the first ``--window`` trials is compared with
that of the last ``--window``.

The baseline (on by default) runs the same search again with the study read afresh from
every trial before each sample (the cached study forgotten each time), as aiqc did before
the study became incremental (issue #14).

Target (issue #14): last-window mean <= 1.5 x first-window mean.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _timing  # noqa: E402

TARGET = 1.5


def build(features_shape, label_shape, **hp):
    import torch.nn as nn

    return nn.Linear(features_shape[0], label_shape[0])


def train_nothing(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    """Records ``epoch_count`` epochs without training: what is left is the framework's cost."""
    import aiqc

    start = time.perf_counter()
    for epoch in range(hp["epoch_count"]):
        aiqc.record_epoch(model, loss=1.0 / (epoch + 1), val_loss=hp["learning_rate"] / (epoch + 1))
    _timing.TRAINING.setdefault("calls", []).append((start, time.perf_counter()))
    return model


def run_search(splitset, trials: int, seed: int) -> list[float]:
    """Run a ``trials``-trial random search; the framework's cost of each trial after the first (s)."""
    import aiqc
    from aiqc.search import Categorical, Float, Int, Search

    queue = aiqc.Experiment.make(
        library="pytorch", analysis_type="classification_multi", fn_build=build, fn_train=train_nothing,
        hyperparameters={"neuron_count": Int(2, 64), "learning_rate": Float(1e-4, 0.1, log=True),
                         "activation": Categorical(["relu", "tanh"]), "epoch_count": [3]},
        splitset_id=splitset.id, search=Search("random", n_trials=trials, seed=seed))
    calls = _timing.TRAINING["calls"] = []
    summary = queue.run_jobs(progress=False)
    assert summary.complete == trials and len(calls) == trials, summary
    return [start - end for (_, end), (start, _) in zip(calls, calls[1:])]


@contextlib.contextmanager
def full_rebuild() -> Iterator[None]:
    """Before each sample, forget the cached study: it is read afresh from every trial."""
    from aiqc import sampling

    incremental = sampling.next_trial

    def rebuilt(experiment):
        sampling._cached_study.cache_clear()
        return incremental(experiment)

    sampling.next_trial = rebuilt
    try:
        yield
    finally:
        sampling.next_trial = incremental


def report(name: str, costs: list[float], window: int) -> float:
    first, last = costs[:window], costs[-window:]
    ratio = statistics.fmean(last) / statistics.fmean(first)
    shown = [f"{label} {window}: mean {statistics.fmean(part) * 1e3:6.2f} ms "
             f"(median {statistics.median(part) * 1e3:6.2f})" for label, part in (("first", first), ("last", last))]
    print(f"  {name:<12} {shown[0]}   {shown[1]}   ratio {ratio:4.2f}")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the search with the study rebuilt from every trial before each sample")
    args = parser.parse_args()
    if args.trials < 2 * args.window + 1:
        parser.error(f"--trials: expected at least 2 x --window + 1 = {2 * args.window + 1}; received {args.trials}")

    import logging

    logging.disable(logging.WARNING)
    import aiqc
    from aiqc import datum
    from fns import reference_make

    with tempfile.TemporaryDirectory() as folder:
        aiqc.setup(Path(folder) / "aiqc.sqlite3")
        splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
        run_search(splitset, 5, seed=99)  # imports and warm-up, untimed
        print(f"search scale benchmark: {args.trials}-trial random search, 1 worker, no training; "
              "framework cost per trial")
        ratio = report("incremental", run_search(splitset, args.trials, seed=0), args.window)
        if args.baseline:
            with full_rebuild():
                report("full rebuild", run_search(splitset, args.trials, seed=0), args.window)
        print(f"incremental: last {args.window} / first {args.window} = {ratio:.2f} "
              f"(target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'})")


if __name__ == "__main__":
    main()
