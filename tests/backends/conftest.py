"""Backend tests: quiet TensorFlow, and the ``backends`` marker (needs TensorFlow/Keras or PyTorch)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_configure(config):
    if not any(line.startswith("backends:") for line in config.getini("markers")):
        config.addinivalue_line("markers", "backends: needs TensorFlow/Keras or PyTorch")
