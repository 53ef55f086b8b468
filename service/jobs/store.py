"""Where jobs live: the :class:`JobStore` interface and its one implementation on SQLite.

A job is a :class:`JobRecord` (who asked what, its status and times, its error) plus two bodies:
the request it replays (kept so that a queued job survives a restart) and the answer it stored.
The interface is small and asynchronous so that a shared store (PostgreSQL, Redis) can back
several HTTP front ends later; :class:`SqliteJobStore` keeps the records in one SQLite file
under the data folder and the bodies as files beside it, each written whole before the row that
names it is committed, so a process killed at any moment leaves no row without its body.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar, get_args

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

T = TypeVar("T")


@dataclass(frozen=True)
class StoredRequest:
    """What it takes to send the request again: method, path, query string and the headers that
    choose how the body is read and the answer encoded (the body itself is stored apart)."""

    method: str
    path: str
    query_string: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names

    @property
    def endpoint(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class StoredAnswer:
    """The answer a job's request got, without its body: status code and headers."""

    status_code: int
    headers: dict[str, str]

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "application/octet-stream")


@dataclass(frozen=True)
class JobRecord:
    """One job. Times are Unix seconds; ``attempts`` counts the times it started running."""

    id: str
    owner: str
    request: StoredRequest
    status: JobStatus = "queued"
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    expires: float | None = None
    attempts: int = 0
    request_bytes: int = 0
    answer: StoredAnswer | None = None
    answer_bytes: int = 0
    error: dict[str, Any] | None = None
    progress: dict[str, Any] | None = None

    @property
    def endpoint(self) -> str:
        return self.request.endpoint

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED


class JobStore(ABC):
    """The jobs' records and bodies. ``now`` arguments are Unix seconds: a record past its
    ``expires`` is gone for every reader even before :meth:`expire` deletes it."""

    @abstractmethod
    async def open(self) -> None:
        """Create what is missing (tables, folders); called once before any other method."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def create(self, record: JobRecord, body: bytes) -> None:
        """Store a new job with its request body."""

    @abstractmethod
    async def get(self, job_id: str, now: float) -> JobRecord | None: ...

    @abstractmethod
    async def list(self, owner: str | None, statuses: Sequence[str] | None, now: float, *,
                   limit: int, after: tuple[float, str] | None = None) -> list[JobRecord]:
        """An owner's jobs (every owner's for None), newest first, at most ``limit``, only those
        in ``statuses`` when given, only those older than ``after`` = (created, id) when given."""

    @abstractmethod
    async def unfinished(self) -> list[JobRecord]:
        """Every queued or running job, oldest first (a restart runs them again)."""

    @abstractmethod
    async def update(self, job_id: str, **fields: Any) -> None:
        """Set fields of :class:`JobRecord` (status, started, finished, expires, attempts, error,
        progress); the request and the answer are set by :meth:`create` and :meth:`save_answer`."""

    @abstractmethod
    async def save_answer(self, job_id: str, answer: StoredAnswer, body: bytes, **fields: Any) -> None:
        """Store the answer and its body, and set ``fields`` as :meth:`update` does, at once."""

    @abstractmethod
    async def request_body(self, job_id: str) -> bytes: ...

    @abstractmethod
    async def answer_body(self, job_id: str) -> bytes: ...

    @abstractmethod
    async def expire(self, now: float) -> int:
        """Delete the jobs whose ``expires`` has passed, with their bodies; how many."""

    @abstractmethod
    async def bytes_of(self, owner: str, now: float) -> int:
        """Bytes of request and answer bodies the owner's jobs keep stored."""

    @abstractmethod
    async def count_by_status(self, now: float) -> dict[str, int]:
        """How many jobs are in each status (every status named, zero included)."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    expires REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    request TEXT NOT NULL,
    request_bytes INTEGER NOT NULL DEFAULT 0,
    answer TEXT,
    answer_bytes INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    progress TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs (owner, created DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (created DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status);
CREATE INDEX IF NOT EXISTS jobs_by_expiry ON jobs (expires);
"""
_UPDATABLE = {"status", "started", "finished", "expires", "attempts", "error", "progress"}
_JSON_COLUMNS = {"error", "progress"}
_LIVE = "(expires IS NULL OR expires > ?)"


def _row_to_record(row: sqlite3.Row) -> JobRecord:
    answer = json.loads(row["answer"]) if row["answer"] else None
    return JobRecord(
        id=row["id"], owner=row["owner"], status=row["status"], created=row["created"],
        started=row["started"], finished=row["finished"], expires=row["expires"],
        attempts=row["attempts"], request=StoredRequest(**json.loads(row["request"])),
        request_bytes=row["request_bytes"],
        answer=None if answer is None else StoredAnswer(**answer), answer_bytes=row["answer_bytes"],
        error=json.loads(row["error"]) if row["error"] else None,
        progress=json.loads(row["progress"]) if row["progress"] else None)


def _column_values(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    return {k: json.dumps(v) if k in _JSON_COLUMNS and v is not None else v for k, v in fields.items()}


def _write_whole(path: Path, body: bytes) -> None:
    """Write ``path`` so that it exists whole or not at all (a rename is atomic)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(body)
    os.replace(partial, path)


class SqliteJobStore(JobStore):
    """Records in ``<folder>/jobs.sqlite3`` (WAL: a committed job survives ``kill -9``), bodies in
    ``<folder>/requests/<id>`` and ``<folder>/answers/<id>``. One connection, used by one thread
    of its own, so the event loop never waits on the disk; one process at a time (a lock file:
    a second server on the same folder is refused at start)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._db: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._lock: BinaryIO | None = None

    # -- plumbing ------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            raise RuntimeError("the job store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    @property
    def _connection(self) -> sqlite3.Connection:
        assert self._db is not None, "the job store is not open"
        return self._db

    def _requests(self) -> Path:
        return self.folder / "requests"

    def _answers(self) -> Path:
        return self.folder / "answers"

    def _open(self) -> None:
        for folder in (self._requests(), self._answers()):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.folder / "lock", "a+b")  # noqa: SIM115 - held until close()
        try:  # one server process per store: another would run this one's jobs again
            fcntl.lockf(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a process's lock (not per app)
        except OSError:
            self._lock.close()
            raise RuntimeError(f"Another labcrunch server uses the job store in {self.folder}; "
                               "give each server its own LABCRUNCH_DATA_DIR.") from None
        db = sqlite3.connect(self.folder / "jobs.sqlite3", check_same_thread=False,
                             isolation_level=None)  # autocommit; transactions where needed
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # durable across a process crash, fast
        db.executescript(_SCHEMA)
        self._db = db
        known = {row["id"] for row in db.execute("SELECT id FROM jobs")}
        for folder in (self._requests(), self._answers()):  # bodies of rows never committed
            for path in folder.iterdir():
                if path.name not in known:
                    path.unlink(missing_ok=True)

    async def open(self) -> None:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-store")
            try:
                await self._call(self._open)
            except BaseException:
                thread, self._thread = self._thread, None
                thread.shutdown(wait=False)
                raise

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            if self._db is not None:
                await asyncio.get_running_loop().run_in_executor(thread, self._db.close)
                self._db = None
            thread.shutdown(wait=True)
        if self._lock is not None:
            self._lock.close()  # releases the lock (so does the end of the process, even kill -9)
            self._lock = None

    # -- the interface -------------------------------------------------------------------------

    async def create(self, record: JobRecord, body: bytes) -> None:
        def create() -> None:
            _write_whole(self._requests() / record.id, body)
            self._connection.execute(
                "INSERT INTO jobs (id, owner, status, created, attempts, request, request_bytes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.id, record.owner, record.status, record.created, record.attempts,
                 json.dumps(asdict(record.request)), len(body)))
        await self._call(create)

    async def get(self, job_id: str, now: float) -> JobRecord | None:
        def get() -> JobRecord | None:
            row = self._connection.execute(
                f"SELECT * FROM jobs WHERE id = ? AND {_LIVE}", (job_id, now)).fetchone()
            return None if row is None else _row_to_record(row)
        return await self._call(get)

    async def list(self, owner: str | None, statuses: Sequence[str] | None, now: float, *,
                   limit: int, after: tuple[float, str] | None = None) -> list[JobRecord]:
        where, values = [_LIVE], [now]
        if owner is not None:
            where.append("owner = ?")
            values.append(owner)
        if statuses:
            where.append(f"status IN ({', '.join('?' * len(statuses))})")
            values += list(statuses)
        if after is not None:
            where.append("(created, id) < (?, ?)")
            values += list(after)
        sql = (f"SELECT * FROM jobs WHERE {' AND '.join(where)} "
               "ORDER BY created DESC, id DESC LIMIT ?")

        def select() -> list[JobRecord]:
            return [_row_to_record(r) for r in self._connection.execute(sql, (*values, limit))]
        return await self._call(select)

    async def unfinished(self) -> list[JobRecord]:
        def select() -> list[JobRecord]:
            rows = self._connection.execute(
                "SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY created, id")
            return [_row_to_record(r) for r in rows]
        return await self._call(select)

    async def update(self, job_id: str, **fields: Any) -> None:
        values = _column_values(fields)

        def update() -> None:
            assignments = ", ".join(f"{k} = ?" for k in values)
            self._connection.execute(f"UPDATE jobs SET {assignments} WHERE id = ?",
                                     (*values.values(), job_id))
        if values:
            await self._call(update)

    async def save_answer(self, job_id: str, answer: StoredAnswer, body: bytes, **fields: Any) -> None:
        values = {**_column_values(fields), "answer": json.dumps(asdict(answer)),
                  "answer_bytes": len(body)}

        def save() -> None:
            _write_whole(self._answers() / job_id, body)
            assignments = ", ".join(f"{k} = ?" for k in values)
            self._connection.execute(f"UPDATE jobs SET {assignments} WHERE id = ?",
                                     (*values.values(), job_id))
        await self._call(save)

    async def request_body(self, job_id: str) -> bytes:
        return await self._call((self._requests() / job_id).read_bytes)

    async def answer_body(self, job_id: str) -> bytes:
        return await self._call((self._answers() / job_id).read_bytes)

    async def expire(self, now: float) -> int:
        def expire() -> int:
            db = self._connection
            ids = [row["id"] for row in db.execute(
                "SELECT id FROM jobs WHERE expires IS NOT NULL AND expires <= ?", (now,))]
            db.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in ids])
            for job_id in ids:  # after the rows: a crash in between leaves only orphan files
                (self._requests() / job_id).unlink(missing_ok=True)
                (self._answers() / job_id).unlink(missing_ok=True)
            return len(ids)
        return await self._call(expire)

    async def bytes_of(self, owner: str, now: float) -> int:
        def total() -> int:
            row = self._connection.execute(
                f"SELECT COALESCE(SUM(request_bytes + answer_bytes), 0) FROM jobs "
                f"WHERE owner = ? AND {_LIVE}", (owner, now)).fetchone()
            return int(row[0])
        return await self._call(total)

    async def count_by_status(self, now: float) -> dict[str, int]:
        def count() -> dict[str, int]:
            rows = self._connection.execute(
                f"SELECT status, COUNT(*) FROM jobs WHERE {_LIVE} GROUP BY status", (now,))
            return {status: 0 for status in STATUSES} | {row[0]: row[1] for row in rows}
        return await self._call(count)
