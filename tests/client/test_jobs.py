"""The client's jobs: `lc.submit.<method>` gives a Job whose result is the synchronous method's,
progress bars, cancelling, waiting with a timeout, listing, and the async twin."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from labcrunch import AsyncClient, AsyncJob, Client, Job, ValidationError
from labcrunch._base import Call, json_answer
from labcrunch.exceptions import APIStatusError
from labcrunch.jobs import submit
from tests.conftest import wait_ready
from tests.helpers import until
from tests.helpers.apps import make_app
from tests.helpers.mock_transport import scripted


class ThreadedTransport(httpx.AsyncBaseTransport):
    """An AsyncClient's requests sent through a TestClient's transport, in a thread: the app's
    jobs live on the TestClient's event loop, not on the test's."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        self.transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        plain = httpx.Request(request.method, request.url, headers=request.headers, content=body)
        response = await asyncio.to_thread(self.transport.handle_request, plain)
        content = await asyncio.to_thread(response.read)
        return httpx.Response(response.status_code, headers=response.headers, content=content,
                              request=request)


@pytest.fixture(scope="module")
def burning():
    """A Client over an app with the CPU-bound test route, and its TestClient."""
    with TestClient(make_app()) as api:
        wait_ready(api)
        with Client("http://testserver", transport=api._transport, max_retries=0) as lc:
            yield lc, api


def _burn(steps: int, seconds_each: float) -> Call[dict]:
    return Call("POST", "/v1/test/burn", json_answer(dict),
                params={"steps": steps, "seconds_each": seconds_each})


def test_a_submitted_job_gives_the_synchronous_result(lc):
    job = lc.submit.gradient("x**3 * y", at={"x": [1.0, 2.0], "y": [1.0, -1.0]}, order=2)
    assert isinstance(job, Job) and job.id and job.info.endpoint == "POST /v1/gradient"
    result = job.result(timeout=60)
    np.testing.assert_array_equal(result.gradient["x"], [3.0, -12.0])  # 3 x² y
    np.testing.assert_array_equal(result.hessian[:, 0, 1], [3.0, 12.0])  # 3 x²
    assert job.status() == "succeeded" and job.info.finished is not None
    assert job.id in [j.id for j in lc.jobs(status=["succeeded", "failed"])]
    assert {j.status for j in lc.jobs(status="succeeded")} == {"succeeded"}


def test_binary_results_come_back_as_the_synchronous_method_reads_them(lc):
    x = np.linspace(0.0, 1.0, 7)
    job = lc.submit.gradient("x**2", at={"x": x}, binary=True)
    np.testing.assert_allclose(job.result(timeout=60).gradient["x"], 2 * x, rtol=1e-15)
    image = lc.submit.fractal(width=24, height=16, max_iter=50).result(timeout=60)
    direct = lc.fractal(width=24, height=16, max_iter=50)
    assert image.data == direct.data and image.data.startswith(b"\x89PNG")
    assert image.device == direct.device and image.elapsed_ms >= 0  # from the stored headers


def test_progress_true_runs_a_job_and_draws_a_bar(lc, capsys):
    x = np.linspace(0.0, 3.0, 40)
    y = 1.5 * x - 2.0
    options = {"method": "gradient_descent", "epochs": 100, "learning_rate": 0.1, "seed": 3}
    waited = lc.fit_line(x, y, progress=True, **options)
    direct = lc.fit_line(x, y, **options)
    assert (waited.m, waited.q) == (direct.m, direct.q)
    m, q = np.polyfit(x, y, 1)
    assert waited.m == pytest.approx(m, abs=1e-2) and waited.q == pytest.approx(q, abs=1e-2)
    drawn = capsys.readouterr().err
    assert "POST /v1/fit/line" in drawn and "succeeded" in drawn and "epochs" in drawn


def test_a_failed_job_raises_what_the_synchronous_call_raises(lc):
    job = lc.submit.gradient("x +* 1", at={"x": 1.0})
    with pytest.raises(ValidationError) as failed:
        job.result(timeout=60)
    assert failed.value.errors[0]["loc"] == ["body", "expression"]
    assert job.info.status == "failed" and job.info.error["status"] == 422


def test_waiting_progress_and_cancelling(burning):
    lc, _ = burning
    job = submit(lc, _burn(5000, 0.01))
    with pytest.raises(TimeoutError):
        job.wait(timeout=0.5, progress=False)
    assert job.status() == "running"
    first = job.progress
    assert first is not None and first.unit == "steps" and first.total == 5000
    # progress reaches the server from the job's worker every 0.25 s (scheduler.STATUS_SECONDS)
    until(lambda: job.status() and job.progress.done > first.done, seconds=10)
    assert job.cancel().status == "cancelled"
    assert job.wait(timeout=5).status == "cancelled"
    with pytest.raises(APIStatusError) as refused:
        job.result()
    assert refused.value.status == 409


def test_a_short_job_waited_with_its_bar(burning, capsys):
    lc, _ = burning
    job = submit(lc, _burn(20, 0.02))
    assert job.result(timeout=60, progress=True) == {"steps": 20, "elapsed_ms": pytest.approx(400, rel=1)}
    drawn = capsys.readouterr().err
    assert "POST /v1/test/burn" in drawn and "20/20" in drawn


def test_a_server_that_answers_at_once_still_gives_a_job():
    """An older server ignores `Prefer: respond-async` and answers 200: that is the result."""
    answer = {"variables": ["x"], "value": 4.0, "gradient": {"x": 4.0}, "backend": "jax",
              "dtype": "float64", "device": "cpu", "elapsed_ms": 1.0}
    transport, sent = scripted(httpx.Response(200, json=answer))
    with Client("http://x", transport=transport) as lc:
        job = lc.submit.gradient("x**2", at={"x": 2.0})
        assert job.status() == "succeeded" and float(job.result().gradient["x"]) == 4.0
    assert sent[0].headers["prefer"] == "respond-async"


def test_the_async_twin(burning):
    lc, api = burning

    async def scenario() -> None:
        transport = ThreadedTransport(api._transport)
        async with AsyncClient("http://testserver", transport=transport, max_retries=0) as alc:
            job = await alc.submit.gradient("sin(x)", at={"x": 0.0})
            assert isinstance(job, AsyncJob)
            assert float((await job.result(timeout=60)).gradient["x"]) == 1.0
            assert await job.status() == "succeeded"
            assert job.id in [j.id for j in await alc.jobs()]
            fit = await alc.fit_line([0.0, 1.0, 2.0], [1.0, 3.0, 5.0], progress=True)
            assert (fit.m, fit.q) == pytest.approx((2.0, 1.0))
            long = await alc.submit.gradient("x", at={"x": 1.0})
            await long.wait(timeout=60, progress=False)
            assert (await long.cancel()).status == "succeeded"  # finished: cancelling changes nothing

    asyncio.run(scenario())


def test_every_compute_method_can_be_submitted():
    """A new compute endpoint of the client belongs in labcrunch.jobs.Submit too."""
    from labcrunch._base import endpoint
    from labcrunch.jobs import Submit, submitted

    not_compute = {"info", "ready", "minimize_optimizers", "jobs", "dense_summary"}
    endpoints = {name for cls in Client.__mro__ for name, value in vars(cls).items()
                 if isinstance(value, endpoint)}
    submittable = {name for name, value in vars(Submit).items() if isinstance(value, submitted)}
    assert submittable == endpoints - not_compute
