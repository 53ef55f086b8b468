"""labcrunch client: ``from labcrunch import Client``.

    with Client("http://gpu-server:8000") as lc:
        print(lc.info()["backends"]["jax"]["default_device"])
"""

from labcrunch._client import AsyncClient, Client
from labcrunch._version import __version__
from labcrunch.exceptions import (
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
    "__version__",
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
