"""Server processes for system tests: one on a free port, ready (/readyz) before it is used,
stopped afterwards."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.helpers import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving_process(command: Callable[[int], list[str]], log_path: Path, env: dict[str, str],
                    seconds: float = 240) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``command(port)`` (its output in ``log_path``) until /readyz answers 200; yield the
    base URL and the process; terminate it at the end."""
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command(port), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:  # not listening yet
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
