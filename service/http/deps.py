"""Dependency aliases shared by the routers (one place, as in the FastAPI template).

All are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, which cost
more than a cached scalar gradient itself.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from labcrunch_service.compute import Runner
from labcrunch_service.errors import Unauthorized
from labcrunch_service.settings import Limits, Settings


async def app_settings(request: Request) -> Settings:
    """The settings this app was made with (``settings.get_settings()`` reads the environment)."""
    return request.app.state.settings


async def app_limits(request: Request) -> Limits:
    return request.app.state.settings.limits


async def app_runner(request: Request) -> Runner:
    return request.app.state.runner


SettingsDep = Annotated[Settings, Depends(app_settings)]
LimitsDep = Annotated[Limits, Depends(app_limits)]
RunnerDep = Annotated[Runner, Depends(app_runner)]


_bearer = HTTPBearer(auto_error=False, description="An API key, when the server is configured with any.")
_header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def require_api_key(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> None:
    """When API keys are configured, a /v1 request must carry one of them."""
    if not settings.api_keys:
        return
    given = bearer.credentials if bearer else header
    # Compared as bytes: compare_digest refuses non-ASCII str (a 500 for a header like "é").
    # Starlette decodes header bytes as latin-1, so this is what was on the wire; keys are UTF-8.
    sent = given.encode("latin-1", "replace") if given else b""
    if sent and any(secrets.compare_digest(sent, key.encode()) for key in settings.api_keys):
        return
    raise Unauthorized(
        "This server requires an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
        headers={"WWW-Authenticate": "Bearer"},
    )
