"""GET /metrics: Prometheus text with request counts and latencies by route template, queues per
owner, jobs per worker, worker memory, restarts and kills by reason, and the workers' caches."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from labcrunch_service.compute import Runner
from labcrunch_service.settings import Settings
from tests.conftest import assert_problem, serving
from tests.helpers import tasks


def scrape(client, **headers) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def matching(samples, name: str, **labels) -> dict[frozenset, float]:
    return {key: v for (n, key), v in samples.items()
            if n == name and set(labels.items()) <= set(dict(key).items())}


def test_requests_are_counted_by_route_template_method_and_status(api):
    before = scrape(api)
    assert api.post("/v1/gradient", json={"expression": "x * 2", "at": {"x": 1.0}}).status_code == 200
    assert api.post("/v1/gradient", json={"expression": "x + y", "at": {"x": 1.0}}).status_code == 422
    assert api.get("/v1/fractal/julia.png?width=8&height=8").status_code == 200
    assert api.get("/v1/no-such-route").status_code == 404
    after = scrape(api)
    for route, method, status in (("/v1/gradient", "POST", "200"), ("/v1/gradient", "POST", "422"),
                                  ("/v1/fractal/{kind}.png", "GET", "200"), ("(unmatched)", "GET", "404")):
        labels = {"route": route, "method": method, "status": status}
        assert value(after, "labcrunch_http_requests_total", **labels) == \
            value(before, "labcrunch_http_requests_total", **labels) + 1, labels
    count = {"route": "/v1/gradient", "method": "POST"}
    assert value(after, "labcrunch_http_request_duration_seconds_count", **count) == \
        value(before, "labcrunch_http_request_duration_seconds_count", **count) + 2
    assert value(after, "labcrunch_http_request_duration_seconds_bucket", le="+Inf", **count) == \
        value(after, "labcrunch_http_request_duration_seconds_count", **count)


def test_queues_running_jobs_workers_kills_and_caches(api):
    scheduler = api.app.state.runner.scheduler
    scheduler.wait_idle()
    for _ in range(2):  # the second is a cache hit in the worker that ran the first
        assert api.post("/v1/gradient", json={"expression": "x * 3.5", "at": {"x": 1.0}}).status_code == 200
    runner = Runner(Settings(warmup=False, load_tensorflow=False))
    holders = [runner.submit(tasks.SLEEP, (1.0,), owner="holder") for _ in scheduler.workers]
    waiting = [runner.submit(tasks.SLEEP, (0.01,), owner="metrics-owner") for _ in range(2)]
    samples = scrape(api)
    assert value(samples, "labcrunch_queued_jobs", owner="metrics-owner") == 2
    assert sum(matching(samples, "labcrunch_running_jobs").values()) == len(scheduler.workers)
    assert sum(matching(samples, "labcrunch_worker_state", state="busy").values()) == len(scheduler.workers)
    for job in holders + waiting:
        job.result(30)
    workers = {w.name for w in scheduler.workers}
    rss = matching(samples, "labcrunch_worker_resident_memory_bytes")
    assert {dict(key)["worker"] for key in rss} == workers and min(rss.values()) > 50e6
    kills = {dict(key)["reason"]: v for key, v in matching(samples, "labcrunch_worker_kills_total").items()}
    assert kills == {reason: scheduler.kills.get(reason, 0) for reason in ("deadline", "memory", "cancel", "crash")}
    assert {dict(key)["worker"] for key in matching(samples, "labcrunch_worker_restarts_total")} == workers
    deadline = time.monotonic() + 10  # the workers report their caches every few seconds
    while True:
        samples = scrape(api)
        hits = matching(samples, "labcrunch_cache_hits_total", cache="gradient.compiled")
        misses = matching(samples, "labcrunch_cache_misses_total", cache="gradient.compiled")
        if sum(hits.values()) >= 1 and sum(misses.values()) >= 1:
            break
        assert time.monotonic() < deadline, (hits, misses)
        time.sleep(0.2)


def test_metrics_need_a_key_like_v1():
    with serving(api_keys={"ops": "metrics-key"}) as client:
        assert_problem(client.get("/metrics"), 401)
        assert scrape(client, Authorization="Bearer metrics-key")
