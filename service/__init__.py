"""labcrunch service: a REST compute service for a lab's shared GPU server.

GPU etiquette is set here, before any framework can touch the GPU: JAX must not grab
most of the card's memory at start-up, and TensorFlow must grow its memory on demand. So are
Ray's defaults, before Ray is imported.
An operator's explicit environment still wins (``setdefault``).
"""

import importlib.metadata
import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Ray (compute workers), read when it is imported: no usage reports, and no C++ crash handler
# in the serving process, which would take over SIGTERM (log it as an error, then end the
# process 3 s later, before the graceful shutdown has stopped the workers).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")

__version__ = importlib.metadata.version("labcrunch")  # written once, in client/_version.py
