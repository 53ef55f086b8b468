"""HTTP routes for /v1/gradient: validate, call the domain function through the runner, encode."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1/gradient", tags=["gradient"])
