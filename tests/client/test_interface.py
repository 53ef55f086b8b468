"""The client's interface: every endpoint documented with per-call options and a result type,
help() and misspelled keywords, a thin import, the docstrings' examples, and what a type checker
sees."""

from __future__ import annotations

import asyncio
import doctest
import importlib
import inspect
import pydoc
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import labcrunch._base as base
from labcrunch import AsyncClient, Client
from tests.helpers.mock_transport import info_answer, recording


def test_every_endpoint_documents_timeout_and_max_retries_and_a_result_type():
    endpoints = [name for cls in Client.__mro__ for name, value in vars(cls).items()
                 if isinstance(value, base.endpoint)]
    assert {"info", "ready", "gradient", "minimize", "minimize_optimizers", "fit_line", "pyhf_fit",
            "pyhf_scan", "pyhf_hypotest", "pyhf_upper_limit", "fractal", "fractal_counts",
            "fractal_tile", "dense_summary", "dense_weights", "dense_predict",
            "dense_train"} <= set(endpoints)
    for name in endpoints:
        for client in (Client, AsyncClient):
            method = getattr(client, name)
            signature = inspect.signature(method)
            assert {"timeout", "max_retries"} <= set(signature.parameters), name
            assert signature.return_annotation not in (inspect.Signature.empty, "Any"), name
            assert not any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()), name
            for section in ("Example:", "Args:", "Returns:", "timeout:", "max_retries:", ">>> "):
                assert section in method.__doc__, (name, section)
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name))
        assert not inspect.iscoroutinefunction(getattr(Client, name))


def test_help_shows_the_method_not_a_wrapper():
    text = pydoc.render_doc(Client.gradient, renderer=pydoc.plaintext)
    assert "gradient(self, expression" in text and "-> 'GradientResult'" in text
    assert "Returns:" in text and "timeout" in text


MISSPELLED = [  # (method, keyword arguments, the message's method and keyword)
    ("gradient", {"expression": "x**2", "at": {"x": 1.0}, "timout": 3.0}, "gradient", "timout"),
    ("info", {"max_retry": 1}, "info", "max_retry"),
    ("fractal", {"format": "npy"}, "fractal", "format"),  # counts have their own method
]


def test_a_misspelled_keyword_is_a_type_error_naming_it():
    transport, seen = recording(info_answer)
    with Client("http://x", transport=transport) as lc:
        for method, kwargs, name, keyword in MISSPELLED:
            with pytest.raises(TypeError, match=rf"{name}\(\) got an unexpected keyword argument '{keyword}'"):
                getattr(lc, method)(**kwargs)

    async def twin() -> None:
        async with AsyncClient("http://x", transport=transport) as alc:
            for method, kwargs, name, keyword in MISSPELLED:
                with pytest.raises(TypeError, match=rf"{name}\(\) got an unexpected keyword argument '{keyword}'"):
                    await getattr(alc, method)(**kwargs)

    asyncio.run(twin())
    assert seen == []  # nothing was sent


def test_importing_the_client_loads_httpx_and_numpy_only():
    script = ("import sys, labcrunch, labcrunch.plot; "
              "print(sorted(m for m in ('matplotlib', 'jax', 'tensorflow', 'scipy', 'pyhf', "
              "'pydantic', 'fastapi', 'labcrunch_service') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


DOCUMENTED_MODULES = ["labcrunch._base", "labcrunch._client", "labcrunch.service", "labcrunch.gradient",
                      "labcrunch.minimize", "labcrunch.fit", "labcrunch.pyhf", "labcrunch.fractal",
                      "labcrunch.nn"]


@pytest.mark.slow  # compiles what the examples compute (pyhf models, optimisers): seconds
@pytest.mark.parametrize("module", DOCUMENTED_MODULES)
def test_docstring_examples_run_against_the_app(lc, module):
    """Every ``>>>`` example, with ``lc`` a Client over the in-process app."""
    from labcrunch.nn import Dense, Network
    from labcrunch.pyhf import simple_model

    found = importlib.import_module(module)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs = {"lc": lc, "simple_model": simple_model, "np": np, "Dense": Dense, "Network": Network}
    tests = finder.find(found, globs=globs)
    # Endpoint methods are descriptors: their examples are on the functions a class lookup gives.
    for cls in vars(found).values():
        if isinstance(cls, type) and cls.__module__ == module:
            for name, value in vars(cls).items():
                if isinstance(value, base.endpoint):
                    tests += finder.find(getattr(Client, name), f"{module}.{cls.__name__}.{name}",
                                         module=found, globs=globs)
    for test in tests:
        runner.run(test)
    results = runner.summarize(verbose=False)
    assert results.failed == 0 and results.attempted > 0


TYPED_USE = '''
from labcrunch import AsyncClient, Client

with Client() as lc:
    reveal_type(lc.gradient("x**2", at={"x": 1.0}))
    reveal_type(lc.with_options(max_retries=0).info())
    reveal_type(lc.fractal_counts(width=3, height=3))
    reveal_type(lc.minimize_optimizers())
    reveal_type(lc.dense(2, [(1, "sigmoid")]).train([[0.0, 1.0]], [1.0], epochs=1))
    lc.dense(2, [(1, "sigmoid")]).train([[0.0, 1.0]], [1.0], epoch=1)  # type: ignore[call-arg]
    lc.gradient("x", timout=3.0)  # type: ignore[call-arg]
    lc.gradient("x", backend="torch")  # type: ignore[arg-type]
    lc.fractal(format="npy")  # type: ignore[call-arg]


async def main() -> None:
    async with AsyncClient() as alc:
        reveal_type(await alc.fit_line([0.0, 1.0], [1.0, 2.0]))
        reveal_type(await alc.dense(2, [(1, "relu")]).predict([[0.0, 1.0]]))
        pending = alc.info(timeout=1.0)
        _ = reveal_type(pending)
        pending.close()
'''


@pytest.mark.slow
def test_type_checkers_see_results_and_coroutines(tmp_path):
    """mypy --strict over the package and a user's code: results typed, the async twin's methods
    coroutines of them, a misspelled keyword or an unknown backend an error (each ``type: ignore``
    above must be used, or --strict reports it)."""
    pytest.importorskip("mypy")
    (tmp_path / "labcrunch").symlink_to(Path(sys.modules["labcrunch"].__file__).parent)
    (tmp_path / "use.py").write_text(TYPED_USE)
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-color-output",
                           "--cache-dir", str(tmp_path / "cache"), "labcrunch", "use.py"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    revealed = [line.split('Revealed type is "')[1].rstrip('"') for line in done.stdout.splitlines()
                if "Revealed type" in line]
    assert revealed == [
        "labcrunch.gradient.GradientResult",
        "labcrunch.service.ServiceInfo",
        "labcrunch.fractal.FractalCounts",
        "list[labcrunch.minimize.OptimizerInfo]",
        "labcrunch.nn.DenseTraining",
        "labcrunch.fit.LineFitResult",
        "numpy.ndarray[tuple[Any, ...], numpy.dtype[Any]]",
        "typing.Coroutine[Any, Any, labcrunch.service.ServiceInfo]",
    ]
