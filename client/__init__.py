"""labcrunch client: ``from client import Client``.

    with Client("http://gpu-server:8000") as lc:
        print(lc.info()["backends"]["jax"]["default_device"])
"""

from client._client import AsyncClient, Client
from client.exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    LabcrunchError,
    NotFoundError,
    RateLimitError,
    RequestTooLargeError,
    ValidationError,
)

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "InternalServerError",
    "LabcrunchError",
    "NotFoundError",
    "RateLimitError",
    "RequestTooLargeError",
    "ValidationError",
]
