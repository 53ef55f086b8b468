"""Real servers on free loopback ports: ``labcrunch serve`` as a process (as a user starts it),
or an app served by uvicorn in a thread of the test process (for settings such as API keys)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_ready(url: str, seconds: float, alive=lambda: True, log: Path | None = None) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet
        if not alive() or time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"server at {url} did not become ready:\n{tail}")
        time.sleep(0.2)


@contextmanager
def labcrunch_serve(log_path: Path, cwd: Path, **environment: str) -> Iterator[str]:
    """``labcrunch serve`` on a free port, run from ``cwd``; yields its URL once /readyz is 200.

    ``environment`` adds LABCRUNCH_... settings; the server is stopped (SIGTERM, then SIGKILL)
    when the block ends.
    """
    port = free_port()
    exe = Path(sys.executable).with_name("labcrunch")
    env = {**os.environ, "LABCRUNCH_LOG_JSON": "true", **environment}
    with open(log_path, "w") as log:
        process = subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, 240, alive=lambda: process.poll() is None, log=log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def serve_in_thread(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free port in a daemon thread; yields its URL when ready."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, 60, alive=thread.is_alive)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=20)
