"""The Ray cluster the workers live in: a local one started for this process, or one joined.

Without an address, :func:`connect` starts Ray on this machine (no dashboard, quiet logs, its
files in a temporary folder removed on :func:`disconnect`), the embedded default: nothing else
to install or start. (A process killed outright, by ``kill -9`` or the OOM killer, cannot remove
its folder: the next local Ray removes the folders whose process is gone,
:func:`remove_stale_folders`.) With ``LABCRUNCH_RAY_ADDRESS`` it joins an existing cluster (a
head started with ``ray start --head``; other machines joined with ``ray start --address``).

Ray ties the processes it starts (its control store, the node's raylet) to the *thread* that
started them: they are killed when that thread ends. So a local Ray is started, and stopped, by
one long-lived thread of its own.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import ray

log = logging.getLogger(__name__)

NAMESPACE = "labcrunch"
FOLDER_PREFIX = "labcrunch-ray-"  # a local Ray's folder: <temporary folder>/labcrunch-ray-<random>
OWNER_FILE = "owner"  # in that folder: "<pid> <start time>" of the process that started the Ray
STOP_SECONDS = 3.0  # how long Ray's processes may take to exit by themselves at shutdown
_lock = threading.Lock()
_local: _LocalRay | None = None
_address: str | None = None  # what connect() was given ("local" for a local Ray)


@dataclass(frozen=True)
class Node:
    """A live node of the cluster, as Ray sees it."""

    id: str
    address: str
    hostname: str
    cpus: int
    gpus: int
    memory_bytes: int
    resources: dict[str, float]


class _LocalRay(threading.Thread):
    """Starts a local Ray, keeps it while the thread lives, stops it and removes its files."""

    def __init__(self) -> None:
        super().__init__(name="ray", daemon=True)
        root = short_temp_root()
        remove_stale_folders(root)
        self.temp_dir = tempfile.mkdtemp(prefix=FOLDER_PREFIX, dir=root)
        me = psutil.Process()
        (Path(self.temp_dir) / OWNER_FILE).write_text(f"{me.pid} {me.create_time()}\n")
        self.started = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with _quiet("ray"):
                ray.init(include_dashboard=False, _temp_dir=self.temp_dir, namespace=NAMESPACE,
                         logging_level=logging.WARNING, configure_logging=False,
                         log_to_driver=False, num_cpus=os.cpu_count() or 1)
        except BaseException as exc:  # noqa: BLE001 - reported by connect()
            self.error = exc
            self.started.set()
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            return
        self.started.set()
        self.stopping.wait()
        started = self._processes()
        try:
            ray.shutdown()
        finally:
            # Ray's agents and idle workers notice their raylet is gone only after a while, and
            # a worker inside a long computation not at all: what this Ray started ends now.
            _, alive = psutil.wait_procs(started, timeout=STOP_SECONDS)
            for process in alive:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            psutil.wait_procs(alive, timeout=STOP_SECONDS)
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _processes(self) -> list[psutil.Process]:
        """Every process this Ray started: the ones that name its folder, and their children."""
        roots = []
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.Error):
                if self.temp_dir in " ".join(child.cmdline()):
                    roots.append(child)
        family = list(roots)
        for root in roots:
            with contextlib.suppress(psutil.Error):
                family += root.children(recursive=True)
        return family


class _quiet:
    """Raise a logger's level for a block: Ray warns at start-up about what we chose on purpose
    (a local cluster with token authentication, no signal handlers outside the main thread)."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def __enter__(self) -> None:
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: Any) -> None:
        self.logger.setLevel(self.level)


def connect(address: str | None) -> None:
    """Start a local Ray (``address`` None) or join the cluster at ``address``; once per process
    (later calls return at once: the workers of every app in this process share it)."""
    global _local, _address
    with _lock:
        if ray.is_initialized():
            return
        if address:
            with _quiet("ray"):
                ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING,
                         configure_logging=False, log_to_driver=False)
            _address = address
            log.info("joined the Ray cluster at %s", address)
            return
        local = _LocalRay()
        local.start()
        local.started.wait()
        if local.error is not None:
            raise local.error
        _local, _address = local, "local"
        log.info("started a local Ray", extra={"ray_temp_dir": local.temp_dir})


def address() -> str | None:
    """``"local"``, the address joined, or None before :func:`connect`."""
    return _address


def disconnect() -> None:
    """Leave the cluster; a local Ray is stopped with every process it started."""
    global _local, _address
    with _lock:
        local, _local = _local, None
        if local is not None:
            local.stopping.set()
            local.join(timeout=60)
        elif ray.is_initialized():
            ray.shutdown()
        _address = None


atexit.register(disconnect)  # registered after Ray's own atexit hook, so it runs first


def nodes() -> list[Node]:
    """The cluster's live nodes."""
    live = []
    for entry in ray.nodes():
        if not entry.get("Alive"):
            continue
        resources = dict(entry.get("Resources", {}))
        live.append(Node(id=entry["NodeID"], address=entry.get("NodeManagerAddress", ""),
                         hostname=entry.get("NodeManagerHostname", ""),
                         cpus=int(resources.get("CPU", 0)), gpus=int(resources.get("GPU", 0)),
                         memory_bytes=int(resources.get("memory", 0)), resources=resources))
    return live


def local_node_id() -> str | None:
    """The id of the node this process runs on (its workers' processes can be watched here)."""
    if not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


def folder_owner(folder: Path) -> tuple[int, float] | None:
    """The pid and start time of the process that started the local Ray in ``folder`` (its
    :data:`OWNER_FILE`); None when there is none yet, or it cannot be read."""
    try:
        pid, started = (folder / OWNER_FILE).read_text().split()
        return int(pid), float(started)
    except (OSError, ValueError):
        return None


def remove_stale_folders(root: str) -> list[Path]:
    """Remove the folders of local Rays under ``root`` whose starting process is gone; what was
    removed. A folder counts as in use unless its :func:`folder_owner` is a process that no
    longer exists (a folder without one, or that this user may not read, is left alone), so a
    Ray starting or running meanwhile keeps its own."""
    removed = []
    for folder in Path(root).glob(f"{FOLDER_PREFIX}*"):
        owner = folder_owner(folder)
        if owner is None or _running(*owner):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    if removed:
        log.info("removed %d folders of local Rays whose process is gone", len(removed),
                 extra={"folders": [str(folder) for folder in removed]})
    return removed


def _running(pid: int, started: float) -> bool:
    """Whether the process ``pid`` that started at ``started`` still runs (not a later process
    given the same pid)."""
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # not ours to inspect: assume it runs
        return True


#: Ray's Unix sockets lie ~85 characters below the temporary folder (labcrunch-ray-…/session_…/
#: sockets/plasma_store); a socket's path may have 107.
_MAX_TEMP_ROOT = 20


def short_temp_root() -> str:
    """The temporary folder (``TMPDIR``), or ``/tmp`` when that one is too deep for Ray's sockets."""
    root = tempfile.gettempdir()
    return root if len(root) <= _MAX_TEMP_ROOT else "/tmp"
