"""HTTP routes for /v1/fractal: validate, call the domain function through the runner, encode."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/fractal", tags=["fractal"])
