"""Side-by-side timing: baseline and candidates alternate in one process, several repetitions.

Each benchmark module ``bench/<name>.py`` exposes ``run(quick: bool) -> dict`` returning
``{"title": str, "rows": [ {...}, ... ], "notes": [...]}``; ``python -m bench`` prints each as a
table and writes ``bench/results/<name>.json`` with the machine description.

Benchmarks of the service over HTTP share one real ``labcrunch serve`` on a free loopback port
(:func:`server`), started on first use and stopped when the run ends (:func:`stop_servers`).
"""

from __future__ import annotations

import atexit
import ctypes
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).parent / "results"
LOOPBACK = "127.0.0.1"  # benchmarks serve on loopback only, never another address


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}
    try:
        import jax

        info["jax_device"] = str(jax.devices()[0])
    except Exception:  # noqa: BLE001 - description only
        pass
    return info


def alternate(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1) -> dict[str, dict[str, float]]:
    """Time each callable ``repeats`` times, interleaved (a, b, c, a, b, c, ...), after warm-up.

    Returns per name: median, min, max and p99 seconds and the spread (max-min)/median.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {name: summarize(ts) for name, ts in samples.items()}


def summarize(ts: list[float]) -> dict[str, float]:
    med = statistics.median(ts)
    return {"median_s": med, "min_s": min(ts), "max_s": max(ts), "p99_s": percentile_ms(ts, 99) / 1e3,
            "spread": (max(ts) - min(ts)) / med if med else 0.0, "n": len(ts)}


def percentile_ms(ts: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100, nearest rank) of ``ts`` seconds, in milliseconds."""
    ordered = sorted(ts)
    rank = min(len(ordered), max(1, math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1] * 1e3


def server_timing(response: httpx.Response) -> dict[str, float]:
    """A service answer's ``Server-Timing`` header as {name: milliseconds}: ``queue`` (waiting
    for a worker), ``worker`` (its round trip), ``compute`` (the task), ``app`` (until the answer
    started)."""
    header = response.headers.get("server-timing", "")
    entries = (entry.strip().partition(";dur=") for entry in header.split(",") if ";dur=" in entry)
    return {name: float(ms) for name, _, ms in entries}


def ratio_rows(stats: dict[str, dict[str, float]], baseline: str, **extra: Any) -> list[dict[str, Any]]:
    """One row per timed entry with its ratio to ``baseline`` (candidate / baseline: < 1 is faster)."""
    base = stats[baseline]["median_s"]
    return [{"case": name, "median_ms": s["median_s"] * 1e3, "spread": s["spread"],
             "ratio_vs_" + baseline: s["median_s"] / base if base else float("nan"), **extra}
            for name, s in stats.items()]


def format_table(result: dict[str, Any]) -> str:
    rows = result.get("rows", [])
    if not rows:
        return f"## {result.get('title', '')}\n(no rows)\n"
    cols = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = [f"## {result.get('title', '')}", "| " + " | ".join(cols) + " |",
             "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    lines += [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(lines) + "\n"


def write(name: str, result: dict[str, Any], quick: bool) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps({"machine": machine(), "quick": quick, **result}, indent=2, default=str))
    return path


# --- a real server on loopback ----------------------------------------------------------------
@dataclass
class Server:
    """A ``labcrunch serve`` subprocess on ``127.0.0.1:<port>``."""

    url: str
    process: subprocess.Popen
    log_path: Path
    startup_s: float  # from start to /readyz 200 (every worker warm)
    livez_s: float = float("nan")  # from start to /livez 200 (the HTTP process up)
    data_dir: Path | None = None  # removed on stop: made for this server

    def rss_mb(self) -> float:
        """Resident memory of the server and every process it started (Ray, the workers), MiB."""
        import psutil

        try:
            root = psutil.Process(self.process.pid)
            family = [root, *root.children(recursive=True)]
        except psutil.Error:
            return float("nan")
        total = 0
        for process in family:
            try:
                total += process.memory_info().rss
            except psutil.Error:
                pass
        return total / 2**20

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_path.unlink(missing_ok=True)
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _dies_with(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` (Linux): the child gets SIGTERM when ``parent`` dies, even by SIGKILL
    (a test's or CI's timeout), where no ``finally`` or ``atexit`` runs. The signal follows the
    thread that started the child, so servers are started from the main thread."""

    def set_parent_death_signal() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above
            os.kill(os.getpid(), signal.SIGTERM)

    return set_parent_death_signal


def start_server(env: dict[str, str] | None = None, ready_timeout_s: float = 300.0) -> Server:
    """Start ``labcrunch serve`` on a free loopback port and wait until /readyz answers 200.

    ``env`` adds ``LABCRUNCH_*`` settings (e.g. ``{"LABCRUNCH_WARMUP": "false"}``).
    """
    port = free_port()
    script = shutil.which("labcrunch", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "labcrunch_service.cli"]
    command += ["serve", "--host", LOOPBACK, "--port", str(port)]
    log = tempfile.NamedTemporaryFile(prefix="labcrunch-bench-", suffix=".log", delete=False)
    # A data folder of its own unless given: nothing compiled by an earlier run is found in the
    # persistent compilation cache, so first requests measure compiles.
    data_dir = None if "LABCRUNCH_DATA_DIR" in (env or {}) else Path(
        tempfile.mkdtemp(prefix="labcrunch-bench-data-"))
    started = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env={**os.environ, "LABCRUNCH_LOG_LEVEL": "WARNING", "LABCRUNCH_LOG_JSON": "false",
             **({"LABCRUNCH_DATA_DIR": str(data_dir)} if data_dir else {}), **(env or {})},
        preexec_fn=_dies_with(os.getpid()) if sys.platform == "linux" else None,
    )
    log.close()  # the child writes to its own copy of the descriptor
    server = Server(f"http://{LOOPBACK}:{port}", process, Path(log.name), 0.0, data_dir=data_dir)
    # Registered before the (up to minutes long) wait, so Ctrl-C or SIGTERM during the server's
    # warm-up still stops it (stop_servers); any failure to come up stops it here.
    _servers.append(server)
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"labcrunch serve exited with {process.returncode}:\n{server.log_tail()}")
            try:
                if math.isnan(server.livez_s) and httpx.get(f"{server.url}/livez",
                                                            timeout=2.0).status_code == 200:
                    server.livez_s = time.perf_counter() - started
                if httpx.get(f"{server.url}/readyz", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"labcrunch serve not ready in {ready_timeout_s:g} s:\n{server.log_tail()}")
            time.sleep(0.2)
    except BaseException:
        _servers.remove(server)
        server.stop()
        raise
    server.startup_s = time.perf_counter() - started
    return server


_servers: list[Server] = []
_shared: dict[bool, Server] = {}


def server(quick: bool) -> Server:
    """The run's shared server (quick: no start-up warm-up, TensorFlow loaded on first use)."""
    if quick not in _shared or _shared[quick].process.poll() is not None:
        env = {"LABCRUNCH_WARMUP": "false", "LABCRUNCH_LOAD_TENSORFLOW": "false"} if quick else {}
        _shared[quick] = start_server(env)
    return _shared[quick]


@atexit.register
def stop_servers() -> None:
    """Stop every server this process started (also run at exit, so none is left behind)."""
    while _servers:
        _servers.pop().stop()
    _shared.clear()
