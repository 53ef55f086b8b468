"""The benchmarks run (`python -m bench --quick`), so they cannot rot; timings are never asserted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from bench import harness
from bench.__main__ import ALL
from tests.helpers import ROOT


@pytest.mark.slow  # every benchmark, each with its own server: tens of seconds
@pytest.mark.timeout(240)
def test_every_benchmark_runs_in_quick_mode(tmp_path):
    for name in ALL:
        (harness.RESULTS / f"{name}-quick.json").unlink(missing_ok=True)
    try:
        result = subprocess.run([sys.executable, "-m", "bench", "--quick"], cwd=ROOT,
                                env={**os.environ, "TMPDIR": str(tmp_path)},
                                capture_output=True, text=True, timeout=230)
    except subprocess.TimeoutExpired as exc:  # say how far it got
        pytest.fail(f"--quick took over {exc.timeout} s:\n{(exc.stdout or b'').decode()[-4000:]}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    # Each server it started was stopped (stop() removes the server's log) and served on loopback.
    assert not list(tmp_path.glob("labcrunch-bench-*.log"))
    assert "`labcrunch serve` on http://127.0.0.1:" in result.stdout
    assert "(no benchmark" not in result.stdout  # every module of `make bench` exists and ran
    for name in ALL:
        path = harness.RESULTS / f"{name}-quick.json"
        written = json.loads(path.read_text())
        assert written["quick"] is True
        assert written["machine"]["nproc"] >= 1 and written["machine"]["cpu"] is not None
        assert written["rows"], f"{name} produced no rows"
        assert f"## {written['title']}" in result.stdout


def test_percentiles_are_nearest_rank():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 100, 1001):
        ts = list(rng.exponential(size=n))
        for q in (1, 50, 90, 99, 100):
            expected = np.percentile(ts, q, method="inverted_cdf") * 1e3
            assert harness.percentile_ms(ts, q) == pytest.approx(expected, rel=1e-12)


def test_alternate_interleaves_and_summarizes():
    calls = []
    stats = harness.alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                              repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert stats["a"]["n"] == 3 and stats["a"]["min_s"] <= stats["a"]["median_s"] <= stats["a"]["max_s"]


@pytest.mark.parametrize("failure", ["interrupted during warm-up", "exits before ready"])
def test_a_server_that_does_not_come_up_is_stopped_and_its_log_removed(monkeypatch, tmp_path, failure):
    """Ctrl-C (or SIGTERM) while the server warms up, or a server that dies, leaves no process
    and no log behind (the process stands in for `labcrunch serve`)."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(harness.tempfile, "tempdir", None)  # re-read TMPDIR
    child = "import time; time.sleep(60)" if failure.startswith("interrupted") else "raise SystemExit(3)"
    started = []
    real_popen = subprocess.Popen

    def popen(command, **kwargs):
        started.append(real_popen([sys.executable, "-c", child], **kwargs))
        return started[-1]

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.subprocess, "Popen", popen)
    if failure.startswith("interrupted"):
        monkeypatch.setattr(harness.httpx, "get", interrupt)
    try:
        with pytest.raises(KeyboardInterrupt if failure.startswith("interrupted") else RuntimeError):
            harness.start_server()
        (process,) = started
        assert process.poll() is not None, "the server process was left running"
        assert not list(tmp_path.glob("labcrunch-bench-*.log"))
        assert harness._servers == []
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has exited


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_server_does_not_outlive_a_killed_benchmark(tmp_path):
    """A benchmark run killed outright (SIGKILL: a timeout) runs no finally or atexit; its
    server must still stop rather than serve on for ever (the process stands in for it)."""
    script = tmp_path / "bench_run.py"
    script.write_text(textwrap.dedent("""
        import subprocess, sys, time
        from bench import harness
        real_popen = subprocess.Popen
        harness.subprocess.Popen = lambda command, **kwargs: real_popen(
            [sys.executable, "-c", "import time; time.sleep(120)"], **kwargs)
        class Ready:
            status_code = 200
        harness.httpx.get = lambda *args, **kwargs: Ready()
        print(harness.start_server().process.pid, flush=True)
        time.sleep(120)
    """))
    run = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                           env={**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)})
    try:
        server_pid = int(run.stdout.readline())
    finally:
        run.kill()
        run.wait()
    deadline = time.monotonic() + 20
    while _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert not _alive(server_pid), "the server outlived the benchmark run that started it"
    finally:
        if _alive(server_pid):
            os.kill(server_pid, signal.SIGKILL)


@pytest.mark.slow  # a server, fractal kernels and a gradient compile: seconds
@pytest.mark.timeout(300)
def test_the_gpu_run_script_runs_on_the_cpu(tmp_path):
    """`python -m bench.gpu` is run on a GPU machine only now and then: its steps run here at
    tiny sizes (the smoke step is test_deploy's, the pyhf compile is slow on a CPU)."""
    result = subprocess.run([sys.executable, "-m", "bench.gpu", "--allow-cpu", "--quick",
                             "--skip", "smoke,pyhf"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)}, timeout=280)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "every step passed" in result.stdout
    for case in ("| fractal | 160² no symmetry", "| gradient | 10,000 points, service", "| toys |"):
        assert case in result.stdout, result.stdout
    assert not list(tmp_path.glob("labcrunch-bench-*")), "a server's log or data folder was left"
