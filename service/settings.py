"""Service settings, read once from the environment (prefix ``LABCRUNCH_``).

Every limit lives in :class:`Limits` so that ``/v1/info`` can list them all and each domain
can refuse over-large work before it starts. Nested values are set with a double underscore,
e.g. ``LABCRUNCH_LIMITS__MAX_POINTS=2000000``.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Limits(BaseModel):
    """Upper bounds on the work one request may ask for."""

    # --- whole requests
    max_body_bytes: int = Field(64 * 1024 * 1024, description="Largest request body of a route "
                                "without a limit of its own below (bytes).")
    max_json_body_bytes: int = Field(
        4 * 1024 * 1024, description="Largest JSON request body on any route (bytes): parsing "
        "JSON holds the interpreter lock for much of its time even in a worker thread (tens of "
        "ms a MiB), so large arrays travel as .npy/.npz.")
    max_gradient_body_bytes: int = Field(64 * 1024 * 1024, description="Largest body of POST "
                                         "/v1/gradient (bytes): an .npz of max_points points.")
    max_minimize_body_bytes: int = Field(1024 * 1024, description="Largest body of POST "
                                         "/v1/minimize (bytes).")
    max_fit_body_bytes: int = Field(64 * 1024 * 1024, description="Largest body of POST "
                                    "/v1/fit/line (bytes): a .npy of points.")
    max_pyhf_body_bytes: int = Field(4 * 1024 * 1024, description="Largest body of POST "
                                     "/v1/pyhf/... (bytes): a workspace and its options (JSON: "
                                     "raise max_json_body_bytes too).")
    max_fractal_body_bytes: int = Field(64 * 1024, description="Largest body of POST /v1/fractal "
                                        "(bytes).")
    max_nn_body_bytes: int = Field(64 * 1024 * 1024, description="Largest body of POST "
                                   "/v1/nn/dense/... (bytes): an .npz of x and y, or a .npy of x.")
    max_wall_seconds: float = Field(60.0, gt=0, description="Wall time one compute job may run, "
                                    "from admission, queue wait included (s).")
    max_job_seconds: float = Field(3600.0, gt=0, description="Wall time of a job (`Prefer: "
                                   "respond-async`) from its start, in place of max_wall_seconds (s).")
    max_job_bytes_per_owner: int = Field(
        1024**3, ge=0, description="Bytes of job requests and results one owner may keep stored.")

    # --- the expression / program language (gradient, minimize)
    max_text_length: int = Field(20_000, description="Characters in an expression or program.")
    max_ast_nodes: int = Field(5_000, description="AST nodes in an expression or program.")
    max_nesting_depth: int = Field(64, description="Nesting depth of the syntax tree.")
    max_exponent_literal: float = Field(1_000.0, description="Largest |literal exponent| in `a ** n`.")
    max_recursion_depth: int = Field(64, description="Depth of user-function calls in a program.")
    max_loop_trips: int = Field(10_000, description="Trip count of one `for i in range(n)` loop.")
    max_operations: int = Field(1_000_000, description="Interpreted operations per program evaluation.")
    max_points: int = Field(2_000_000, description="Points in one gradient batch.")
    max_program_points: int = Field(1_000, description="Points in one batch of a program (run point by point).")
    max_variables: int = Field(256, description="Free variables of one expression or program.")
    max_result_values: int = Field(
        50_000_000, description="Numbers in one gradient answer: points x (1 + n + n^2 for order 2).")

    # --- minimize
    max_steps: int = Field(100_000, description="Optimiser steps per run.")
    max_learning_rates: int = Field(64, description="Learning rates in one sweep.")
    max_history_entries: int = Field(200_000, description="History entries returned, over all runs.")
    max_history_values: int = Field(
        2_000_000, description="Numbers in the histories returned, over all runs: entries x "
        "(variables + 2).")

    # --- fit/line
    max_fit_points: int = Field(20_000_000, description="Data points in one line fit.")
    max_fit_epochs: int = Field(10_000, description="Gradient-descent epochs in one line fit.")
    max_fit_batches: int = Field(10_000_000, description="Minibatch steps (epochs x batches) in one fit.")

    # --- nn (dense networks)
    max_network_parameters: int = Field(1_000_000, description="Weights and biases of one dense network.")
    max_network_layers: int = Field(64, description="Layers of one dense network.")
    max_network_values: int = Field(
        20_000_000, description="Numbers in one network request's data (x, y) and in its answer "
        "(outputs, Jacobian).")
    max_network_activations: int = Field(
        16_777_216, description="Numbers one minibatch's forward pass holds: batch size x units of "
        "all layers (x outputs for a Jacobian).")
    max_training_batch_size: int = Field(65_536, description="Samples per training minibatch.")
    max_training_epochs: int = Field(10_000, description="Epochs of one network training.")
    max_training_steps: int = Field(1_000_000, description="Minibatch steps (epochs x batches) of "
                                    "one network training.")

    # --- pyhf
    max_pyhf_parameters: int = Field(500, description="Parameters of one HistFactory model.")
    max_scan_points: int = Field(250_000, description="Points in one likelihood scan grid.")
    max_hypotest_points: int = Field(200, description="POI values in one hypotest or limit scan.")
    model_cache_size: int = Field(32, description="Built HistFactory models kept (LRU).")
    max_ellipse_pairs: int = Field(100, description="Parameter pairs in one pyhf fit's ellipse list.")
    max_profile_points: int = Field(1_000, description="Grid + gradient points of a profiled pyhf scan "
                                    "(one fit each).")
    max_toys: int = Field(100_000, description="Pseudo-experiments of one toy-based pyhf hypotest or "
                          "limit: ntoys x POI values (two fits per toy, for each of s+b and b).")
    max_fit_datasets: int = Field(10_000, description="Datasets of one batch pyhf fit.")

    # --- fractal
    max_pixels: int = Field(16_777_216, description="width x height of one fractal image.")
    max_iter: int = Field(100_000, description="Iterations per pixel.")
    max_pixel_iterations: int = Field(
        20_000_000_000, description="width x height x (max_iter + 100): coloring and encoding a "
        "pixel cost about as much as 100 iterations.")
    max_aspect_ratio: int = Field(4096, description="Longer side / shorter side of one fractal "
                                  "image (a one-pixel strip costs far more per pixel).")
    max_json_pixels: int = Field(1_048_576, description="Pixels of one fractal answered as JSON.")
    max_tile_zoom: int = Field(40, description="Deepest zoom level of /v1/fractal/tiles.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LABCRUNCH_", env_nested_delimiter="__", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_json: bool = True

    # Compute workers (service/compute): processes managed by Ray, one job at a time each.
    # Unset, `labcrunch serve` starts a local Ray; else it joins this cluster ("10.0.0.5:6379").
    ray_address: str | None = None
    # CPU workers on every node (None: one per core, at most 8); GPU workers: one per GPU, or
    # `gpu_workers_per_device` sharing each card (each with that share of JAX's memory fraction).
    cpu_workers: int | None = Field(None, ge=0)
    gpu_workers_per_device: int = Field(1, ge=1)
    # A worker over this resident memory is stopped and its job answers 413 naming the limit
    # (None: the node's memory shared between its workers and the rest of the machine).
    worker_memory_bytes: int | None = Field(None, ge=1)
    # The scheduler: a queue per owner, free workers handed round-robin across owners. Beyond
    # an owner's queue places (or all owners' together) that owner gets 429 with Retry-After.
    max_queued_jobs: int = Field(64, ge=0)
    max_queued_per_owner: int = Field(16, ge=0)
    max_running_per_owner: int | None = Field(None, ge=1)  # None: as many as there are workers
    retry_after_seconds: int = Field(2, ge=0)
    # On SIGTERM/Ctrl-C, how long running requests may finish before they are stopped.
    shutdown_grace_seconds: float = Field(30.0, ge=0)

    # Optional API keys: when any is set, every /v1 route and /metrics need `Authorization: Bearer
    # <key>` (or `X-API-Key: <key>`). A map names each key's owner ({"alice": "k1", "bob": "k2"}):
    # logs, metrics and the scheduler's fair share show the name, never the key; a plain list
    # names them key-1, key-2, ... Without keys, a request's owner is its client address.
    # Health routes stay open for load balancers.
    api_keys: dict[str, str] | list[str] = Field(default_factory=list)
    # Whether /docs, /redoc and /openapi.json answer without a key when keys are set.
    public_docs: bool = True

    # What the service keeps between runs: JAX's persistent compilation cache in
    # `<data_dir>/jax-cache` (delete that folder to clear it). Default: the platform's user data
    # folder, e.g. ~/.local/share/labcrunch on Linux.
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("labcrunch", False)))

    # Compiled functions (XLA executables, tf.functions) kept per cache, least recently used
    # dropped first: gradient, minimize and fit each keep one cache of this size.
    compile_cache_size: int = Field(1024, ge=1)

    # Freed memory that the server and each worker keep for reuse instead of giving it back to
    # the system at once (glibc's malloc; see service/malloc.py): large batches then reuse
    # mapped pages instead of faulting in fresh ones. 0: the C library's defaults.
    retain_freed_bytes: int = Field(256 * 2**20, ge=0)
    # Large arrays between the server and workers on its own machine travel through blocks of
    # shared memory (/dev/shm) that both keep mapped and reuse, at most this many bytes of them
    # (see service/compute/exchange.py); beyond it, and to other machines, through Ray's object
    # store. 0: always the object store.
    shared_memory_bytes: int = Field(512 * 2**20, ge=0)

    # Start-up warm-up (imports frameworks, compiles the hot paths); /readyz is 503 until done.
    warmup: bool = True
    # Import TensorFlow at start-up; when false it is imported on first use.
    load_tensorflow: bool = True

    limits: Limits = Field(default_factory=Limits)

    # Jobs (`Prefer: respond-async`, /v1/jobs; stored under `<data_dir>/jobs`): at most
    # `max_running_jobs` compute at once, the others wait in one queue shared fairly between
    # owners; an owner may have `max_pending_jobs_per_owner` queued or running (then 429).
    # Finished jobs and their results are kept `job_result_ttl` seconds (default 7 days).
    max_running_jobs: int = Field(1, ge=1)
    max_pending_jobs_per_owner: int = Field(64, ge=1)
    job_result_ttl: float = Field(7 * 24 * 3600.0, gt=0)

    @field_validator("api_keys")
    @classmethod
    def _keys_distinct(cls, keys: dict[str, str] | list[str]) -> dict[str, str] | list[str]:
        values = list(keys.values()) if isinstance(keys, dict) else keys
        if any(not key for key in values) or len(set(values)) != len(values):
            raise ValueError("API keys must be non-empty and distinct")
        return keys


def get_settings() -> Settings:
    """Settings read from the environment (routes get the app's own through ``http.deps.SettingsDep``)."""
    return Settings()
