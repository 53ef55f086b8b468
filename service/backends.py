"""The numerical backends (JAX, TensorFlow): one-time set-up, availability and devices.

JAX is required; TensorFlow is optional and the service runs without it, saying so in
``/v1/info``. ``configure()`` must run in every compute process before any JAX computation:
pyhf's JAX backend turns on ``jax_enable_x64`` process-wide, so we set it once, here, and every
array gets an explicit dtype in domain code (float32 stays float32 because we ask for it). It
also points JAX's persistent compilation cache at ``<data_dir>/jax-cache`` (``LABCRUNCH_DATA_DIR``),
so a new process loads what an earlier one compiled instead of compiling it again, for every
domain alike.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from labcrunch_service.errors import BackendUnavailable
from labcrunch_service.settings import get_settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_configured = False
_tf: ModuleType | None = None
_tf_error: str | None = None


def compilation_cache_dir() -> Path:
    """Where JAX keeps compiled programs between processes: ``<data_dir>/jax-cache``."""
    return get_settings().data_dir / "jax-cache"


def _use_compilation_cache(jax: ModuleType) -> None:
    path = compilation_cache_dir()
    try:  # only the service's user may write programs that the service will load and run
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("no persistent compilation cache (%s): every process compiles anew", exc)
        return
    jax.config.update("jax_compilation_cache_dir", str(path))
    # Every compile is kept: the gradient and minimize programs compile in tens of
    # milliseconds each, but a request may need several, and a pyhf model takes seconds.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def configure() -> None:
    """Enable float64 in JAX, select pyhf's JAX backend and turn on the persistent compilation
    cache (settings from the environment), once per process, before anything compiles."""
    global _configured
    if _configured:
        return
    with _lock:
        if _configured:
            return
        import jax

        jax.config.update("jax_enable_x64", True)
        _use_compilation_cache(jax)
        try:
            import pyhf

            pyhf.set_backend("jax")
        except ImportError:  # pragma: no cover - pyhf is a server dependency
            log.warning("pyhf is not installed; /v1/pyhf is unavailable")
        _configured = True


def tensorflow() -> ModuleType:
    """Return the TensorFlow module, importing it on first use; BackendUnavailable if absent."""
    global _tf, _tf_error
    if _tf is not None:
        return _tf
    with _lock:
        if _tf is None and _tf_error is None:
            try:
                import tensorflow as tf

                for gpu in tf.config.list_physical_devices("GPU"):
                    tf.config.experimental.set_memory_growth(gpu, True)
                _tf = tf
            except Exception as exc:  # ImportError, or a broken CUDA install
                _tf_error = f"{type(exc).__name__}: {exc}"
                log.warning("TensorFlow unavailable: %s", _tf_error)
    if _tf is None:
        raise BackendUnavailable(
            f"The tensorflow backend is not available on this server ({_tf_error}); "
            "use backend 'jax'."
        )
    return _tf


def tensorflow_available() -> bool:
    try:
        tensorflow()
    except BackendUnavailable:
        return False
    return True


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def jax_device() -> str:
    """The device JAX computes on by default, e.g. ``cpu`` or ``gpu:0 (NVIDIA H100 80GB HBM3)``."""
    import jax

    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", "")
    name = f"{dev.platform}:{dev.id}"
    return f"{name} ({kind})" if dev.platform != "cpu" and kind else dev.platform


def tensorflow_device() -> str:
    tf = tensorflow()
    gpus = tf.config.list_logical_devices("GPU")
    return f"gpu:0 ({gpus[0].name})" if gpus else "cpu"


def device_for(backend: str) -> str:
    return tensorflow_device() if backend == "tensorflow" else jax_device()


@functools.cache
def _jax_device_cached() -> str:
    return jax_device()


def loaded_devices() -> dict[str, str]:
    """The device of each backend this process has loaded (``jax``, ``tensorflow``), for the
    answer's ``device``; a backend never loaded here is absent rather than loaded for it."""
    devices = {}
    if _configured:
        devices["jax"] = _jax_device_cached()
    if _tf is not None:
        devices["tensorflow"] = _tf_device_cached()
    return devices


@functools.cache
def _tf_device_cached() -> str:
    return tensorflow_device()


def describe() -> dict[str, Any]:
    """Backends with version, availability and devices, for ``/v1/info``."""
    import jax

    out: dict[str, Any] = {
        "jax": {
            "available": True,
            "version": jax.__version__,
            "x64": bool(jax.config.jax_enable_x64),
            "default_device": jax_device(),
            "devices": [f"{d.platform}:{d.id} {getattr(d, 'device_kind', '')}".strip() for d in jax.devices()],
        }
    }
    tf_version = _version("tensorflow") or _version("tensorflow-cpu")
    if tf_version is None:
        out["tensorflow"] = {"available": False, "version": None, "reason": "not installed"}
    elif _tf is None and _tf_error is None:
        out["tensorflow"] = {"available": None, "version": tf_version, "reason": "not loaded yet"}
    elif _tf is None:
        out["tensorflow"] = {"available": False, "version": tf_version, "reason": _tf_error}
    else:
        out["tensorflow"] = {
            "available": True,
            "version": tf_version,
            "default_device": tensorflow_device(),
            "devices": [d.name for d in _tf.config.list_logical_devices()],
        }
    for lib in ("pyhf", "optax", "iminuit", "scipy", "numpy"):
        out.setdefault("libraries", {})[lib] = _version(lib)
    return out
