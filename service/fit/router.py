"""HTTP routes for /v1/fit/line: validate, call the domain function through the runner, encode."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/fit/line", tags=["fit"])
