"""A local Ray's folder names the process that started it; the next local Ray removes the folders
of processes that are gone (killed outright: their exit hooks never ran) and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from labcrunch_service.compute.cluster import FOLDER_PREFIX, OWNER_FILE, remove_stale_folders


def ray_folder(root, name: str, owner: str | None):
    folder = root / f"{FOLDER_PREFIX}{name}"
    (folder / "session_latest").mkdir(parents=True)
    if owner is not None:
        (folder / OWNER_FILE).write_text(owner)
    return folder


def ended_process() -> str:
    """The owner line of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(child.pid).create_time()
    child.wait()
    return f"{child.pid} {started}\n"


def test_only_folders_of_ended_processes_are_removed(tmp_path):
    me = psutil.Process()
    dead = ray_folder(tmp_path, "dead", ended_process())
    reused = ray_folder(tmp_path, "reused", f"{os.getpid()} {me.create_time() - 3600}\n")  # pid reused
    mine = ray_folder(tmp_path, "mine", f"{os.getpid()} {me.create_time()}\n")
    starting = ray_folder(tmp_path, "starting", None)  # no owner written yet
    garbled = ray_folder(tmp_path, "garbled", "not a pid\n")
    other = tmp_path / "something-else"
    other.mkdir()
    assert sorted(remove_stale_folders(str(tmp_path))) == sorted([dead, reused])
    assert not dead.exists() and not reused.exists()
    assert mine.exists() and starting.exists() and garbled.exists() and other.exists()
