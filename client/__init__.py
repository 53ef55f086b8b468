"""labcrunch client: ``from labcrunch import Client``.

    with Client("http://gpu-server:8000") as lc:
        print(lc.info().backends["jax"].default_device)

Imports httpx and numpy only; :mod:`labcrunch.plot` imports matplotlib when a figure is drawn,
:mod:`labcrunch.jobs` tqdm when a job's progress bar is.
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
from labcrunch.jobs import AsyncJob, Job, JobInfo, JobProgress, JobStatus
from labcrunch.service import BackendInfo, ComputeInfo, ServiceInfo

__all__ = [
    "__version__",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncJob",
    "AuthenticationError",
    "BackendInfo",
    "BadRequestError",
    "Client",
    "ComputeInfo",
    "InternalServerError",
    "Job",
    "JobInfo",
    "JobProgress",
    "JobStatus",
    "LabcrunchError",
    "NotFoundError",
    "RateLimitError",
    "RequestTooLargeError",
    "ServiceInfo",
    "ValidationError",
]
