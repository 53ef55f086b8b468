"""Client defaults, in one place."""

import os

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
BASE_URL_ENV = "LABCRUNCH_URL"
API_KEY_ENV = "LABCRUNCH_API_KEY"
DEFAULT_TIMEOUT = 120.0  # seconds: compute requests can be long
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RETRIES = 2
INITIAL_RETRY_DELAY = 0.5  # seconds, doubling each try
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0  # a longer Retry-After is not waited for: our own backoff is used instead
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
# 503 problem types that retrying cannot fix: a backend the server lacks, a job over its wall time
# (retrying would run the same too-long job again), a job that restarts of the server interrupted.
PERMANENT_503_TYPES = ("/backend-unavailable", "/timeout", "/job-interrupted")

#: Requests with at least this many numbers per array (gradient batch points, fit points, pyhf
#: scan grid points) travel as .npy/.npz instead of JSON lists, unless ``binary=`` says otherwise.
BINARY_THRESHOLD = 10_000

#: Grid points per axis asked for with a 1- or 2-variable minimisation, so that
#: ``MinimizeResult.plot()`` can draw the function itself (the server evaluates it; the client
#: never evaluates expressions).
LANDSCAPE_POINTS = {1: 201, 2: 81}

PLOT_INSTALL_HINT = "pip install 'labcrunch[plot]'"


def default_base_url() -> str:
    return os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
