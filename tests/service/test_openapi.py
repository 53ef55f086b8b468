"""The app's OpenAPI document: served with /docs, every /v1 operation declares its errors; and
schemathesis over it: no 5xx, every error is problem+json.

The fuzzing covers every endpoint automatically as endpoints land. The app under test has small
limits so that generated requests stay cheap; examples per operation are bounded.
"""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck

from labcrunch_service.app import create_app
from labcrunch_service.settings import Limits, Settings


def test_openapi_and_docs(api):
    spec = api.get("/openapi.json").json()
    assert spec["info"]["title"] == "labcrunch"
    assert "Problem" in spec["components"]["schemas"]
    assert api.get("/docs").status_code == 200
    for path, ops in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, op in ops.items():
            declared = {int(code) for code in op["responses"] if code.isdigit()}
            assert declared & {413, 422, 429, 500}, f"{method.upper()} {path} declares no errors"


SMALL = Limits(
    max_wall_seconds=20, max_text_length=300, max_ast_nodes=200, max_points=64,
    max_program_points=8, max_loop_trips=50, max_operations=20_000, max_steps=50,
    max_learning_rates=4, max_history_entries=2_000, max_fit_points=500, max_fit_epochs=5,
    max_fit_batches=200, max_scan_points=400, max_hypotest_points=5, max_pixels=4096,
    max_iter=64, max_pixel_iterations=100_000, max_network_parameters=200, max_network_layers=4,
    max_network_values=200, max_training_epochs=3, max_training_steps=20,
)
app = create_app(Settings(warmup=False, load_tensorflow=False, limits=SMALL,
                          max_concurrent_jobs=2, max_queued_jobs=64))
app.state.ready.set()  # no lifespan under schemathesis' ASGI transport; nothing to warm up

schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.mark.slow  # a dozen generated requests per operation: seconds each
@schema.parametrize()
@hypothesis.settings(max_examples=12, deadline=None, derandomize=True,
                     suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_problem_bodies(case):
    response = case.call()
    where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    # 503 is the documented answer of an unavailable backend or an over-long job, never a crash.
    assert response.status_code < 500 or response.status_code == 503, where
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        assert content_type.startswith("application/problem+json"), where
        body = response.json()
        assert {"type", "title", "status", "detail"} <= body.keys(), where
