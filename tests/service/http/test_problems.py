"""Errors as RFC 9457 problem bodies: unknown routes and methods, validation, internal errors."""

from __future__ import annotations

import json
import logging

from labcrunch_service.logs import JsonFormatter
from tests.conftest import assert_problem


def test_unknown_route_is_a_problem(api):
    body = assert_problem(api.get("/v1/nope"), 404)
    assert "/v1/nope" in body["detail"] and body["request_id"]


def test_wrong_method_is_a_problem(api):
    assert_problem(api.delete("/v1/info"), 405)


def test_a_wrong_method_names_every_method_of_the_path(api):
    """GET and DELETE /v1/jobs/{id} are two routes; Starlette's 405 named the first one's only."""
    response = api.put("/v1/jobs/0")
    body = assert_problem(response, 405)
    assert response.headers["allow"] == "GET, DELETE" and "GET, DELETE" in body["detail"]


def test_validation_error_lists_fields(test_api):
    body = assert_problem(test_api.post("/v1/test/echo", json={"n": "many"}), 422)
    assert body["errors"][0]["loc"] == ["body", "n"]
    assert "n" in body["detail"]
    body = assert_problem(test_api.post("/v1/test/echo", content=b"{not json",
                                        headers={"content-type": "application/json"}), 422)


class JsonLines(logging.Handler):
    """Formats each record as it is emitted (when the request id is in context)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


def test_internal_error_hides_the_traceback(test_api, caplog):
    lines = JsonLines()
    logging.getLogger().addHandler(lines)
    try:
        with caplog.at_level(logging.ERROR):
            response = test_api.get("/v1/test/crash", headers={"X-Request-ID": "crash-1"})
    finally:
        logging.getLogger().removeHandler(lines)
    body = assert_problem(response, 500)
    assert "secret" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    assert any("secret internal detail" in (r.exc_text or str(r.exc_info)) for r in caplog.records)
    # "logged under this request id": the answer and the traceback's log line carry the same id.
    assert response.headers["x-request-id"] == "crash-1" and body["request_id"] == "crash-1"
    traced = [line for line in lines.lines if "secret internal detail" in line.get("exc", "")]
    assert traced and all(line["request_id"] == "crash-1" for line in traced)
    assert test_api.get("/livez").status_code == 200  # still serving
