"""Real servers on free loopback ports: any command as a process (``serving_process``),
``labcrunch serve`` as a user starts it (``labcrunch_serve``), or an app served by uvicorn in a
thread of the test process (``serve_in_thread``, for settings such as API keys). Each is ready
(/readyz is 200) before it is used and stopped afterwards."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(url: str, seconds: float, alive=lambda: True, log: Path | None = None,
                     path: str = "/readyz") -> None:
    """Poll ``path`` until 200; fail with the tail of ``log`` if ``alive()`` turns false or it
    takes over ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet
        if not alive() or time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"server at {url} did not become ready:\n{tail}")
        time.sleep(0.2)


@contextmanager
def serving_process(command: Callable[[int], list[str]], log_path: Path, env: dict[str, str],
                    cwd: Path | None = None, seconds: float = 240) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``command(port)`` (its output in ``log_path``) until /readyz answers 200; yield the
    base URL and the process; stop it (SIGTERM, then SIGKILL) at the end."""
    from tests.helpers import ROOT

    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command(port), stdout=log, stderr=subprocess.STDOUT, env=env,
                                   cwd=cwd or ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, seconds, alive=lambda: process.poll() is None, log=log_path)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def labcrunch_process(log_path: Path, cwd: Path,
                      **environment: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """``labcrunch serve`` on a free port, run from ``cwd``; yields its URL and its process (its
    pid, its children, a signal) once /readyz is 200. ``environment`` adds LABCRUNCH_...
    settings; its data folder is its own unless ``environment`` names one."""
    from tests.helpers import server_data_dir

    exe = Path(sys.executable).with_name("labcrunch")
    env = {**os.environ, "LABCRUNCH_LOG_JSON": "true", "LABCRUNCH_DATA_DIR": str(server_data_dir()),
           **environment}

    def command(port: int) -> list[str]:
        return [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)]

    with serving_process(command, log_path, env, cwd=cwd) as served:
        yield served


@contextmanager
def labcrunch_serve(log_path: Path, cwd: Path, **environment: str) -> Iterator[str]:
    """:func:`labcrunch_process`, yielding its URL only."""
    with labcrunch_process(log_path, cwd, **environment) as (url, _):
        yield url


@contextmanager
def serve_in_thread(app, ready_path: str = "/readyz", **config: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free port in a daemon thread (``config``: more of
    uvicorn's settings); yields its URL once ``ready_path`` answers 200."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on", **config))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, 60, alive=thread.is_alive, path=ready_path)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=20)
