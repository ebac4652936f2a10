"""PyTorch backend, and two helpers for the user's ``fn_train``:

- :func:`fit` (``aiqc.torch_fit``), a ready mini-batch training loop that records history;
- :func:`record_epoch` (``aiqc.record_epoch``), to record history from your own loop.

torch is imported only when a job needs it.
"""

from __future__ import annotations

import io
from typing import Any, Callable

import numpy as np

from aiqc.analysis import AnalysisType
from aiqc.backends import epochs
from aiqc.backends._base import PROBE_ROWS, Backend, Defaults
from aiqc.exceptions import JobPruned, ValidationError

#: the model attribute holding what :func:`record_epoch` recorded: ``{name: [value per epoch]}``
HISTORY_ATTRIBUTE = "_aiqc_history"


def _adamax(torch: Any, model: Any, hp: dict[str, Any]) -> Any:
    return torch.optim.Adamax(model.parameters(), lr=hp.get("learning_rate", 0.01))


def _class_indices_or_floats(labels: np.ndarray) -> np.ndarray:
    """Class indices in one column become the 1-D int64 targets CrossEntropyLoss expects;
    one-hot rows stay float32."""
    return labels[:, 0].astype(np.int64) if labels.shape[1] == 1 else labels.astype(np.float32)


#: analysis type -> default loss, optimizer, prediction and label form
DEFAULTS = {
    # on logits; one-hot float or integer class targets
    AnalysisType.CLASSIFICATION_MULTI: Defaults(loss=lambda torch, shape: torch.nn.CrossEntropyLoss(),
                                                optimizer=_adamax, labels=_class_indices_or_floats),
    # the model ends in Sigmoid, as with Keras
    AnalysisType.CLASSIFICATION_BINARY: Defaults(loss=lambda torch, shape: torch.nn.BCELoss(), optimizer=_adamax),
    AnalysisType.REGRESSION: Defaults(loss=lambda torch, shape: torch.nn.L1Loss(), optimizer=_adamax),
}


class TorchBackend(Backend):
    """PyTorch: models are ``torch.nn.Module``, trained on CUDA when available."""

    name = "pytorch"
    extra = "pytorch"
    modules = ("torch",)
    model_description = "torch.nn.Module"
    defaults = DEFAULTS
    _device = None  # chosen once per process by device()

    def _import(self) -> Any:
        import torch

        return torch

    def device(self) -> Any:
        """CUDA when available, else the CPU."""
        if TorchBackend._device is None:
            torch = self.import_library()
            TorchBackend._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return TorchBackend._device

    def _configure(self, threads: int | None, seed: int | None) -> None:
        torch = self.import_library()
        if threads:
            torch.set_num_threads(threads)
        if seed is not None:
            torch.manual_seed(seed)  # CPU and every CUDA device

    def warm_up(self) -> None:
        """Import torch, and what its first optimizer imports lazily (``torch._dynamo``, ~1 s)."""
        torch = self.import_library()
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)

    def is_model(self, obj: Any) -> bool:
        return isinstance(obj, self.import_library().nn.Module)

    def is_optimizer(self, obj: Any) -> bool:
        return isinstance(obj, self.import_library().optim.Optimizer)

    def prepare_model(self, model: Any) -> Any:
        return model.to(self.device())

    def sample_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """An image's (height, width, channels) as torch's (channels, height, width); a table's and
        a sequence's shape as they are (a sequence is (timesteps, features): batch first)."""
        shape = tuple(int(d) for d in shape)
        return (shape[-1], *shape[:-1]) if len(shape) == 3 else shape

    def layout(self, features: np.ndarray) -> np.ndarray:
        """Images (N, H, W, C) as (N, C, H, W), torch's convolution layout (a view); the rest as they are."""
        return np.moveaxis(features, -1, 1) if np.ndim(features) == 4 else features

    def to_samples(self, features: np.ndarray, labels: np.ndarray | None, analysis: AnalysisType) -> dict:
        """Tensors on :meth:`device`, copied (a user's in-place edit cannot reach aiqc's arrays).
        Features are float32; images channels first, (N, C, H, W). Labels are float32, of shape (n, columns), unless the analysis
        type's row says otherwise (multiclass labels held in one column become the 1-D int64
        class indices CrossEntropyLoss expects)."""
        torch = self.import_library()
        device = self.device()
        features = np.ascontiguousarray(self.layout(features), dtype=np.float32)
        samples = {"features": torch.tensor(features, device=device), "labels": None}
        if labels is not None:
            labels = np.asarray(labels)
            labels = labels.reshape(len(labels), -1)
            form = self.row(analysis).labels
            samples["labels"] = torch.tensor(labels.astype(np.float32) if form is None else form(labels), device=device)
        return samples

    def to_numpy(self, value: Any) -> np.ndarray | None:
        if value is None:
            return None
        if hasattr(value, "detach"):
            return value.detach().cpu().numpy()
        return np.asarray(value)

    def outputs(self, model: Any, features: np.ndarray) -> np.ndarray:
        torch = self.import_library()
        model.eval()
        with torch.no_grad():
            x = torch.as_tensor(np.ascontiguousarray(self.layout(features), dtype=np.float32), device=self.device())
            return model(x).cpu().numpy()

    def output_shape(self, model: Any, features_shape: tuple[int, ...]) -> tuple[int, ...]:
        """A forward pass in eval mode under ``torch.no_grad()``, on the device of the model's
        first parameter (the CPU for a model without any); the model's train/eval mode is restored."""
        torch = self.import_library()
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
        training = model.training
        model.eval()
        try:
            with torch.no_grad():
                output = model(torch.zeros((PROBE_ROWS, *features_shape), dtype=torch.float32, device=device))
        finally:
            model.train(training)
        if not hasattr(output, "shape"):
            raise TypeError(f"expected the model to return one tensor; it returned a {type(output).__name__}")
        return tuple(output.shape)

    def history(self, model: Any) -> dict[str, list[float]]:
        return {name: list(values) for name, values in getattr(model, HISTORY_ATTRIBUTE, {}).items()}

    def dump(self, model: Any) -> bytes:
        buffer = io.BytesIO()
        self.import_library().save(model.state_dict(), buffer)
        return buffer.getvalue()

    def load(self, blob: bytes, rebuild: Callable[[], Any]) -> Any:
        """``rebuild()`` (fn_build with the job's hyperparameters), then the stored weights."""
        torch = self.import_library()
        model = rebuild()
        model.load_state_dict(torch.load(io.BytesIO(blob), weights_only=True, map_location=self.device()))
        return model.to(self.device()).eval()

    export_file = "model.pt2"
    export_format = "torch.export"

    def export_model(self, model: Any, features_shape: tuple[int, ...]) -> bytes:
        """A ``torch.export`` program of the model in eval mode, on the CPU, taking any number of
        rows: the graph of torch operations and the weights, without the model's Python class."""
        import copy

        torch = self.import_library()
        module = copy.deepcopy(model).cpu().eval()  # the cached model stays where it is
        example = torch.zeros((PROBE_ROWS, *features_shape), dtype=torch.float32)
        try:
            program = torch.export.export(module, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        except Exception as error:  # noqa: BLE001 - torch.export raises many kinds; each means "cannot capture"
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(
                "expected a model torch.export can capture (one tensor of features in, one tensor out, any number "
                f"of rows, no Python branching on tensor values); capturing it failed: {first}") from error
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        return buffer.getvalue()

    def load_exported(self, blob: bytes) -> Any:
        """The program back (``torch.export.load``), as a module that runs it on the CPU."""
        torch = self.import_library()
        program = torch.export.load(io.BytesIO(blob))
        return _program_module_class(torch)(program.module())


_PROGRAM_MODULE: dict[str, type] = {}


def _program_module_class(torch: Any) -> type:
    """The ``torch.nn.Module`` that runs an exported program (made once, when torch is loaded)."""
    if "class" not in _PROGRAM_MODULE:

        class ExportedProgram(torch.nn.Module):
            """A ``torch.export`` program as a module. It was captured in eval mode, so ``eval()``
            and ``train()`` change nothing in it (the program's own module refuses them); it runs
            on the CPU, where it was exported, whatever device its input is on."""

            def __init__(self, program: Any) -> None:
                super().__init__()
                object.__setattr__(self, "program", program)  # not a submodule: Module.eval() would reach it

            def forward(self, features: Any) -> Any:
                return self.program(features.to("cpu"))

        _PROGRAM_MODULE["class"] = ExportedProgram
    return _PROGRAM_MODULE["class"]


def record_epoch(model: Any, **values: float) -> None:
    """Record one epoch's values as the job's history, from your own training loop::

        def fn_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
            for epoch in range(hp["epoch_count"]):
                ...  # train, then measure
                aiqc.record_epoch(model, loss=train_loss, val_loss=val_loss)
            return model

    Call it once per epoch, with the same names each time. In a search with a pruner it
    raises :class:`aiqc.exceptions.JobPruned` when the job should stop (let it propagate:
    aiqc measures the model as it stands and records the job as PRUNED).
    """
    history = model.__dict__.setdefault(HISTORY_ATTRIBUTE, {})
    epoch = len(next(iter(history.values()), []))
    for name, value in values.items():
        history.setdefault(name, []).append(float(value))
    if epochs.report(epoch, values):
        raise JobPruned(f"pruned after epoch {epoch + 1}")


def fit(model: Any, loser: Any, optimizer: Any, samples_train: dict, samples_evaluate: dict | None = None,
        epoch_count: int = 10, batch_size: int = 32, shuffle: bool = True) -> Any:
    """Train ``model`` in mini-batches and return it; for ``fn_train``::

        def fn_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
            return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                                  epoch_count=hp["epoch_count"], batch_size=hp["batch_size"])

    Records per epoch ``loss`` (mean over the epoch's batches, weighted by batch size) and,
    when ``samples_evaluate`` is given, ``val_loss``; with a classification loss
    (CrossEntropyLoss, NLLLoss, BCELoss, BCEWithLogitsLoss) also ``accuracy`` and
    ``val_accuracy``, measured in eval mode after the epoch.
    """
    import torch

    for parameter, value, least in (("epoch_count", epoch_count, 0), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValidationError.expected(parameter, f"an integer >= {least}", value)
    x, y = samples_train["features"], samples_train["labels"]
    evaluate = samples_evaluate is not None and samples_evaluate.get("labels") is not None
    classify = isinstance(loser, (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss, torch.nn.BCELoss,
                                  torch.nn.BCEWithLogitsLoss))
    for _ in range(epoch_count):
        model.train()
        order = torch.randperm(len(x), device=x.device) if shuffle else torch.arange(len(x), device=x.device)
        total = 0.0
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = loser(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        values = {"loss": total / max(len(x), 1)}
        model.eval()
        with torch.no_grad():
            if classify:
                values["accuracy"] = _accuracy(model(x), y, loser)
            if evaluate:
                out = model(samples_evaluate["features"])
                values["val_loss"] = float(loser(out, samples_evaluate["labels"]))
                if classify:
                    values["val_accuracy"] = _accuracy(out, samples_evaluate["labels"], loser)
        record_epoch(model, **values)
    return model


def _accuracy(outputs: Any, labels: Any, loser: Any) -> float:
    """Share of rows whose predicted class is the label's class."""
    import torch

    if outputs.ndim == 2 and outputs.shape[1] > 1:
        predicted = outputs.argmax(dim=1)
    else:
        threshold = 0.0 if isinstance(loser, torch.nn.BCEWithLogitsLoss) else 0.5
        predicted = (outputs.reshape(-1) >= threshold).long()
    truth = labels.argmax(dim=1) if labels.ndim == 2 and labels.shape[1] > 1 else labels.reshape(-1).round().long()
    return float((predicted == truth).float().mean())
