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
RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
# 503 problem types that retrying cannot fix: a backend the server lacks, a job over its wall time
# (retrying would run the same too-long job again).
PERMANENT_503_TYPES = ("/backend-unavailable", "/timeout")


def default_base_url() -> str:
    return os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
