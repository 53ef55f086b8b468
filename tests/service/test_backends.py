"""The frameworks' set-up: TensorFlow reported absent, GPU memory etiquette set before start."""

from __future__ import annotations

import pytest


def test_info_says_when_tensorflow_is_absent(monkeypatch):
    from labcrunch_service import backends

    monkeypatch.setattr(backends, "_tf", None)
    monkeypatch.setattr(backends, "_tf_error", "ModuleNotFoundError: No module named 'tensorflow'")
    described = backends.describe()["tensorflow"]
    assert described["available"] is False and "tensorflow" in described["reason"]
    from labcrunch_service.errors import BackendUnavailable

    with pytest.raises(BackendUnavailable):
        backends.tensorflow()


def test_gpu_etiquette_is_set_before_frameworks_start():
    import os

    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
