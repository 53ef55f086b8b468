"""JSON log lines carry the request id."""

from __future__ import annotations

import json
import logging

from labcrunch_service.http.context import request_id_var
from labcrunch_service.logs import JsonFormatter


def test_log_lines_are_json_with_the_request_id():
    record = logging.LogRecord("service", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    token = request_id_var.set("rid-42")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["msg"] == "hello there" and line["request_id"] == "rid-42" and line["level"] == "INFO"
