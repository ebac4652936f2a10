"""Benchmark: a 40-trial random search with median pruning, run by aiqc and by plain
Optuna with SQLite storage, in one process.

    python bench/search.py [--trials 40] [--epochs 10]

aiqc samples the space (random, seeded); Optuna replays the same configurations (enqueued
trials), so both train the same trials of the same PyTorch model on the same encoded iris
arrays with the same loop, report validation loss each epoch to the
same kind of pruner, and optimise validation accuracy. aiqc additionally records, per
trial, metrics on three splits, predictions, history and the model. Training time is
measured inside the shared loop; framework overhead = wall time - training time.

Target (issue #6): aiqc no slower than Optuna + SQLite.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _timing  # noqa: E402

TRAINING = _timing.TRAINING


def build(features_shape, label_shape, **hp):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(features_shape[0], hp["neuron_count"]), nn.ReLU(),
                         nn.Linear(hp["neuron_count"], label_shape[0]))


def train_aiqc(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    import aiqc

    start = time.perf_counter()
    try:
        return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                              epoch_count=hp["epoch_count"], batch_size=hp["batch_size"])
    finally:
        _timing.TRAINING["seconds"] += time.perf_counter() - start


def run_aiqc(splitset, trials: int, epochs: int, seed: int) -> tuple[float, list[dict]]:
    import aiqc
    from aiqc.search import Float, Int, Search

    queue = aiqc.Experiment.make(
        library="pytorch", analysis_type="classification_multi", fn_build=build, fn_train=train_aiqc,
        hyperparameters={"neuron_count": Int(4, 32, log=True), "learning_rate": Float(1e-4, 0.1, log=True),
                         "batch_size": [16], "epoch_count": [epochs]},
        splitset_id=splitset.id,
        search=Search("random", n_trials=trials, seed=seed, pruner="median", n_startup_trials=5, n_warmup_epochs=2))
    start = time.perf_counter()
    summary = queue.run_jobs(progress=False)
    seconds = time.perf_counter() - start
    assert summary.complete + summary.pruned == trials, summary
    from aiqc.orm import Hyperparamset

    sampled = [{k: h.hyperparameters[k] for k in ("neuron_count", "learning_rate")}
               for h in queue.experiment.hyperparamsets.order_by(Hyperparamset.index)]
    return seconds, sampled


def run_optuna(splitset, trials: int, epochs: int, seed: int, folder: str, replay: list[dict] | None = None) -> float:
    import optuna
    import torch
    from sklearn.metrics import accuracy_score

    from aiqc.backends import get_backend
    from aiqc.analysis import AnalysisType
    from aiqc.backends.pytorch import fit

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = get_backend("pytorch")
    analysis = AnalysisType.CLASSIFICATION_MULTI
    arrays = {s: splitset.samples(s) for s in ("train", "validation")}
    train = backend.to_samples(arrays["train"]["features"], arrays["train"]["labels"], analysis)
    validation = backend.to_samples(arrays["validation"]["features"], arrays["validation"]["labels"], analysis)

    def objective(trial):
        hp = {"neuron_count": trial.suggest_int("neuron_count", 4, 32, log=True),
              "learning_rate": trial.suggest_float("learning_rate", 1e-4, 0.1, log=True)}
        torch.manual_seed(trial.number)
        model = build((train["features"].shape[1],), (train["labels"].shape[1],), **hp)
        optimizer = torch.optim.Adamax(model.parameters(), lr=hp["learning_rate"])
        loser = torch.nn.CrossEntropyLoss()
        for epoch in range(epochs):  # the same loop, one epoch at a time, reporting to Optuna
            start = time.perf_counter()
            fit(model, loser, optimizer, train, validation, epoch_count=1, batch_size=16)
            TRAINING["seconds"] += time.perf_counter() - start  # training only, not Optuna's storage
            # Optuna's pruner reads values in the study's direction (maximize): report -val_loss
            trial.report(-model._aiqc_history["val_loss"][-1], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        predicted = model(validation["features"]).argmax(dim=1).numpy()
        return accuracy_score(arrays["validation"]["labels"].argmax(axis=1), predicted)

    study = optuna.create_study(storage=f"sqlite:///{folder}/optuna.sqlite3", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2))
    start = time.perf_counter()
    for params in replay or []:  # the very configurations aiqc sampled, so both train the same trials
        study.enqueue_trial(params)
    study.optimize(objective, n_trials=trials)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import logging

    logging.disable(logging.WARNING)
    import aiqc
    from aiqc import datum
    from fns import reference_make

    with tempfile.TemporaryDirectory() as folder:
        aiqc.setup(Path(folder) / "aiqc.sqlite3")
        splitset = reference_make(datum.to_pandas("iris.tsv"), random_state=0)
        run_optuna(splitset, 3, 1, 99, folder)  # imports and warm-up, untimed
        results = {"aiqc": [], "optuna": []}
        for round_ in range(args.rounds):
            TRAINING["seconds"] = 0.0
            wall, sampled = run_aiqc(splitset, args.trials, args.epochs, round_)
            results["aiqc"].append((wall, TRAINING["seconds"]))
            TRAINING["seconds"] = 0.0
            with tempfile.TemporaryDirectory() as inner:
                wall = run_optuna(splitset, args.trials, args.epochs, round_, inner, replay=sampled)
            results["optuna"].append((wall, TRAINING["seconds"]))
        print(f"search benchmark: {args.trials}-trial random search, median pruning, {args.epochs} epochs, "
              f"{args.rounds} rounds (same configurations both sides)")
        totals = {}
        for name, runs in results.items():
            wall = sum(w for w, _ in runs) / len(runs)
            training = sum(t for _, t in runs) / len(runs)
            totals[name] = (wall, wall - training)
            print(f"  {name:<7} wall {wall:6.2f} s   training {training:6.2f} s   framework overhead {wall - training:5.2f} s")
        print(f"ratio aiqc / optuna: wall {totals['aiqc'][0] / totals['optuna'][0]:.2f}, "
              f"overhead {totals['aiqc'][1] / totals['optuna'][1]:.2f} (target: wall <= 1.0)")


if __name__ == "__main__":
    main()
