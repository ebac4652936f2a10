"""The model functions of examples/iris.yaml (PyTorch)."""


def fn_build(features_shape, label_shape, **hp):
    import torch.nn as nn

    return nn.Sequential(
        nn.Linear(features_shape[0], hp["neuron_count"]), nn.ReLU(),
        nn.Linear(hp["neuron_count"], label_shape[0]),
    )


def fn_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
    import aiqc

    return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                          epoch_count=hp["epoch_count"], batch_size=hp["batch_size"])
