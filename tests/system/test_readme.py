"""Every ``bash`` and ``python`` example of the README runs as written against a live server.

The server (``labcrunch serve``) listens on a free port, so ``localhost:8000`` and
``127.0.0.1:8000`` in an example are pointed at it, and Python examples get ``LABCRUNCH_URL``;
nothing else in an example is changed. Examples run in a scratch folder that holds the
repository's ``examples/`` and ``.venv`` (as links), as after the README's two commands;
bash runs with ``-e -o pipefail`` and curl with ``--fail-with-body``, so an answer of 4xx/5xx
fails the example. Python examples run in ``.venv``'s interpreter, with matplotlib's
non-interactive backend. A block the README marks with a reason (see tests/helpers/readme.py) is
skipped with that reason.

The examples are independent (each in its own folder), so they run a few at a time: most of
their time is the server compiling on first use, which overlaps well on two cores.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.helpers.readme import examples

pytestmark = pytest.mark.slow  # a live server; the pyhf and TensorFlow examples take seconds

README = ROOT / "README.md"
EXAMPLES = examples(README)
SERVER_ADDRESS = re.compile(r"\b(?:localhost|127\.0\.0\.1):8000\b")
SECONDS = 300  # per example: the first request of each kind compiles on a fresh server
AT_ONCE = 3  # examples running at the same time


def _scratch(folder: Path) -> Path:
    """A working folder as a user's checkout looks to the examples: examples/ and .venv."""
    folder.mkdir(parents=True)
    (folder / "examples").symlink_to(ROOT / "examples")
    (folder / ".venv").symlink_to(Path(sys.prefix))
    return folder


def _environment(url: str) -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    # PATH without the venv: `python` in an example is the system's, as in a fresh shell.
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and Path(p).resolve() != Path(venv_bin).resolve())
    return {**os.environ, "PATH": path, "LABCRUNCH_URL": url, "MPLBACKEND": "Agg"}


def _run(example, url: str, folder: Path) -> subprocess.CompletedProcess:
    code = SERVER_ADDRESS.sub(url.removeprefix("http://"), example.code)
    if example.language == "bash":
        script = "curl() { command curl --fail-with-body \"$@\"; }\n" + code
        command = ["bash", "-e", "-o", "pipefail", "-c", script]
    else:
        command = [str(folder / ".venv" / "bin" / "python"), "-c", code]
    return subprocess.run(command, cwd=folder, env=_environment(url), capture_output=True,
                          text=True, timeout=SECONDS)


@pytest.fixture(scope="module")
def outcomes(live_server, tmp_path_factory):
    """Every runnable example started against the live server, AT_ONCE at a time: name → Future
    of its finished process."""
    root = tmp_path_factory.mktemp("readme")
    with ThreadPoolExecutor(AT_ONCE, thread_name_prefix="readme") as pool:
        # The longest blocks first: they tend to be the slowest, and finish last otherwise.
        runnable = sorted((e for e in EXAMPLES if not e.skip), key=lambda e: -len(e.code))
        futures: dict[str, Future] = {
            e.name: pool.submit(_run, e, live_server, _scratch(root / f"line-{e.line}"))
            for e in runnable}
        yield futures
        for future in futures.values():
            future.cancel()


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_readme_example_runs(example, outcomes):
    if example.skip:
        pytest.skip(f"{example.name}: {example.skip}")
    done = outcomes[example.name].result()
    assert done.returncode == 0, (
        f"{example.name} failed (exit {done.returncode}):\n--- code\n{example.code}"
        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-5000:]}")


def test_the_readme_has_examples_and_every_skip_has_a_reason():
    assert len(EXAMPLES) >= 10
    assert all(e.skip is None or e.skip.strip() for e in EXAMPLES)


def test_curl_examples_are_silent():
    """curl without -s fills a terminal with progress meters."""
    for example in EXAMPLES:
        for command in re.findall(r"(?m)^\s*curl\b[^\n]*", example.code):
            assert re.search(r"\s-(s|[a-zA-Z]*s[a-zA-Z]*)\b|--silent", command), (example.name, command)


def test_make_serve_installs_what_the_python_examples_import():
    """The README promises the Python examples run in .venv after `make serve`: plotting ones
    need matplotlib, which the `plot` extra brings."""
    makefile = (ROOT / "Makefile").read_text()
    serve_install = re.search(r"\$\(SERVER_STAMP\):.*\n\t.*pip install[^\n]*'\.\[(?P<extras>[^\]]*)\]'",
                              makefile)
    assert serve_install and "plot" in serve_install["extras"].split(","), serve_install
