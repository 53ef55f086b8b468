"""Dependency aliases shared by the routers (one place, as in the FastAPI template).

All are ``async def``: FastAPI runs a plain ``def`` dependency in a worker thread, which cost
more than a cached scalar gradient itself.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from labcrunch_service.compute.runner import OwnedRunner
from labcrunch_service.http.auth import owner_of
from labcrunch_service.settings import Limits, Settings


async def app_settings(request: Request) -> Settings:
    """The settings this app was made with (``settings.get_settings()`` reads the environment)."""
    return request.app.state.settings


async def app_limits(request: Request) -> Limits:
    return request.app.state.settings.limits


async def app_runner(request: Request) -> OwnedRunner:
    """The app's runner, bound to the request's owner (the scheduler queues by owner)."""
    return request.app.state.runner.bound(owner_of(request))


SettingsDep = Annotated[Settings, Depends(app_settings)]
LimitsDep = Annotated[Limits, Depends(app_limits)]
RunnerDep = Annotated[OwnedRunner, Depends(app_runner)]


_bearer = HTTPBearer(auto_error=False, description="An API key, when the server is configured with any.")
_header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def request_owner(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    _header: Annotated[str | None, Depends(_header)],
) -> str:
    """Who asks: the name of their API key, or their address (``http.auth``).

    :class:`~labcrunch_service.http.auth.AuthMiddleware` has checked the key before the body was
    read; the two security schemes here make the OpenAPI document say how to send one.
    """
    return owner_of(request)


OwnerDep = Annotated[str, Depends(request_owner)]
