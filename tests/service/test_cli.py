"""`labcrunch serve`: where it binds."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("argv", "env", "expected"), [
    ([], {}, ("127.0.0.1", 8000)),
    ([], {"LABCRUNCH_HOST": "10.0.0.5", "LABCRUNCH_PORT": "9001", "HOST": "0.0.0.0"},
     ("10.0.0.5", 9001)),
    (["--host", "::1", "--port", "0"], {"LABCRUNCH_PORT": "9001"}, ("::1", 0)),
])
def test_serve_binds_where_asked(monkeypatch, argv, env, expected):
    """--host/--port, else LABCRUNCH_HOST/PORT, else loopback:8000; a generic $HOST is ignored."""
    import uvicorn

    from labcrunch_service import cli

    for name in ("LABCRUNCH_HOST", "LABCRUNCH_PORT", "HOST", "PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("labcrunch_service.logs.configure_logging", lambda *a, **k: None)
    bound = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: bound.append((host, port)))
    cli.main(["serve", *argv])
    assert bound == [expected]
