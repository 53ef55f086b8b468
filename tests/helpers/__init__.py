"""Plain functions and reference data shared by the tests (no tests, no fixtures: see conftest)."""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the repository

_data_root: Path | None = None


def data_dir() -> Path:
    """A fresh data folder (an app's job store that no other app of the tests opens), inside one
    temporary folder removed when the test process ends."""
    global _data_root
    if _data_root is None:
        _data_root = Path(tempfile.mkdtemp(prefix="labcrunch-tests-"))
        atexit.register(shutil.rmtree, _data_root, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=_data_root))


def server_data_dir() -> Path:
    """A fresh data folder for a server process (a job store of its own) whose ``jax-cache/`` is
    shared by every server of the test session: a program one compiled, the next loads."""
    folder = data_dir()
    assert _data_root is not None
    shared = _data_root / "jax-cache"
    shared.mkdir(mode=0o700, exist_ok=True)
    (folder / "jax-cache").symlink_to(shared, target_is_directory=True)
    return folder


def until(check: Callable[[], Any], seconds: float = 60.0, every: float = 0.02) -> Any:
    """Poll ``check`` until it returns something true, and return that (fail after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting"
        time.sleep(every)
    return found
