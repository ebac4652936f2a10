"""PyTorch backend, and two helpers for the user's ``fn_train``: :func:`fit`, a ready
training loop, and :func:`record_epoch`, for users who write their own loop.

torch is imported only when a job needs it.
"""

from __future__ import annotations

import io
from typing import Any, Callable

import numpy as np

from aiqc.analysis import AnalysisType
from aiqc.backends._base import Backend

HISTORY_ATTRIBUTE = "_aiqc_history"


class TorchBackend(Backend):
    name = "pytorch"
    extra = "pytorch"
    modules = ("torch",)
    model_description = "torch.nn.Module"

    def _import(self) -> Any:
        import torch

        return torch

    _device = None

    def device(self) -> Any:
        """CUDA when available, else CPU; decided once per process."""
        if TorchBackend._device is None:
            torch = self.import_library()
            TorchBackend._device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return TorchBackend._device

    def _configure(self, threads: int | None, seed: int | None) -> None:
        torch = self.import_library()
        if threads:
            torch.set_num_threads(threads)
        if seed is not None:
            torch.manual_seed(seed)

    def is_model(self, obj: Any) -> bool:
        return isinstance(obj, self.import_library().nn.Module)

    def prepare_model(self, model: Any) -> Any:
        return model.to(self.device())

    def default_loss(self, analysis: AnalysisType, label_shape: tuple) -> Any:
        nn = self.import_library().nn
        if analysis is AnalysisType.CLASSIFICATION_MULTI:
            return nn.CrossEntropyLoss()  # logits; one-hot float or integer targets
        if analysis is AnalysisType.CLASSIFICATION_BINARY:
            return nn.BCELoss()  # the model ends in Sigmoid, as with Keras
        return nn.L1Loss()

    def default_optimizer(self, model: Any, analysis: AnalysisType, hp: dict) -> Any:
        return self.import_library().optim.Adamax(model.parameters(), lr=hp.get("learning_rate", 0.01))

    def to_samples(self, features: np.ndarray, labels: np.ndarray | None, analysis: AnalysisType) -> dict:
        torch = self.import_library()
        device = self.device()
        out = {"features": torch.as_tensor(np.asarray(features, dtype=np.float32), device=device), "labels": None}
        if labels is not None:
            labels = np.asarray(labels)
            if analysis is AnalysisType.CLASSIFICATION_MULTI and (labels.ndim == 1 or labels.shape[1] == 1):
                out["labels"] = torch.as_tensor(labels.reshape(-1).astype(np.int64), device=device)
            else:
                out["labels"] = torch.as_tensor(labels.astype(np.float32), device=device)
        return out

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
            x = torch.as_tensor(np.asarray(features, dtype=np.float32), device=self.device())
            return model(x).detach().cpu().numpy()

    def history(self, model: Any) -> dict[str, list[float]]:
        return {k: list(v) for k, v in getattr(model, HISTORY_ATTRIBUTE, {}).items()}

    def dump(self, model: Any) -> bytes:
        buffer = io.BytesIO()
        self.import_library().save(model.state_dict(), buffer)
        return buffer.getvalue()

    def load(self, blob: bytes, rebuild: Callable[[], Any]) -> Any:
        torch = self.import_library()
        model = rebuild()
        state = torch.load(io.BytesIO(blob), weights_only=True, map_location=self.device())
        model.load_state_dict(state)
        model.to(self.device())
        model.eval()
        return model


def record_epoch(model: Any, **values: float) -> None:
    """Record one epoch's values for aiqc's history, from your own training loop::

        for epoch in range(hp["epoch_count"]):
            ...
            aiqc.record_epoch(model, loss=train_loss, val_loss=val_loss)
    """
    history = model.__dict__.setdefault(HISTORY_ATTRIBUTE, {})
    for name, value in values.items():
        history.setdefault(name, []).append(float(value))


def fit(model: Any, loser: Any, optimizer: Any, samples_train: dict, samples_evaluate: dict | None = None,
        epoch_count: int = 10, batch_size: int = 32, shuffle: bool = True) -> Any:
    """A ready mini-batch training loop for ``fn_train``; records per epoch ``loss`` and
    ``val_loss`` (plus ``accuracy`` / ``val_accuracy`` for classification losses) and
    returns the model::

        def fn_train(model, loser, optimizer, samples_train, samples_evaluate, **hp):
            return aiqc.torch_fit(model, loser, optimizer, samples_train, samples_evaluate,
                                  epoch_count=hp["epoch_count"], batch_size=hp["batch_size"])
    """
    import torch

    x, y = samples_train["features"], samples_train["labels"]
    classify = isinstance(loser, (torch.nn.CrossEntropyLoss, torch.nn.BCELoss, torch.nn.BCEWithLogitsLoss,
                                  torch.nn.NLLLoss))
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
        values = {"loss": total / len(x)}
        model.eval()
        with torch.no_grad():
            if classify:
                values["accuracy"] = _accuracy(model(x), y)
            if samples_evaluate is not None:
                out = model(samples_evaluate["features"])
                values["val_loss"] = float(loser(out, samples_evaluate["labels"]))
                if classify:
                    values["val_accuracy"] = _accuracy(out, samples_evaluate["labels"])
        record_epoch(model, **values)
    return model


def _accuracy(outputs: Any, labels: Any) -> float:
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        predicted = outputs.argmax(dim=1)
        truth = labels.argmax(dim=1) if labels.ndim == 2 else labels
    else:
        scores = outputs.reshape(-1)
        threshold = 0.5 if float(scores.min()) >= 0 and float(scores.max()) <= 1 else 0.0
        predicted, truth = (scores >= threshold).long(), labels.reshape(-1).round().long()
    return float((predicted == truth).float().mean())
