"""The SQLite job store: records and bodies, listing, expiry, bytes per owner, reopening."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys

from labcrunch_service.jobs.store import JobRecord, SqliteJobStore, StoredAnswer, StoredRequest

REQUEST = StoredRequest("POST", "/v1/gradient", "order=2",
                        {"content-type": "application/x-npz", "accept": "application/x-npz"})


def _record(job_id: str, owner: str, created: float) -> JobRecord:
    return JobRecord(id=job_id, owner=owner, request=REQUEST, created=created)


def test_records_bodies_and_reopening(tmp_path):
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path)
        await store.open()
        await store.create(_record("a", "alice", 100.0), b"request-a")
        await store.update("a", status="running", started=101.0, attempts=1,
                           progress={"done": 1.0, "total": 4.0, "unit": "steps"})
        answer = StoredAnswer(200, {"content-type": "application/x-npz", "x-device": "cpu"})
        await store.save_answer("a", answer, b"\x00answer", status="succeeded", finished=102.0,
                                expires=10_000.0)
        await store.close()

        again = SqliteJobStore(tmp_path)  # a new process: everything committed is there
        await again.open()
        record = await again.get("a", now=200.0)
        assert record is not None
        assert (record.status, record.started, record.finished, record.attempts) == ("succeeded", 101.0, 102.0, 1)
        assert record.request == REQUEST and record.endpoint == "POST /v1/gradient"
        assert record.answer == answer and record.answer.media_type == "application/x-npz"
        assert record.progress == {"done": 1.0, "total": 4.0, "unit": "steps"}
        assert await again.request_body("a") == b"request-a"
        assert await again.answer_body("a") == b"\x00answer"
        assert (record.request_bytes, record.answer_bytes) == (9, 7)
        await again.close()

    asyncio.run(scenario())


def test_listing_newest_first_by_owner_status_and_cursor(tmp_path):
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path)
        await store.open()
        for i in range(5):
            await store.create(_record(f"a{i}", "alice", 100.0 + i), b"")
        await store.create(_record("b0", "bob", 103.5), b"")
        await store.update("a1", status="failed")
        ids = [r.id for r in await store.list("alice", None, 0.0, limit=10)]
        assert ids == ["a4", "a3", "a2", "a1", "a0"]
        everybody = [r.id for r in await store.list(None, None, 0.0, limit=3)]
        assert everybody == ["a4", "b0", "a3"]
        page = await store.list("alice", None, 0.0, limit=2, after=(103.0, "a3"))
        assert [r.id for r in page] == ["a2", "a1"]
        assert [r.id for r in await store.list("alice", ["failed"], 0.0, limit=10)] == ["a1"]
        assert [r.id for r in await store.list("alice", ["queued", "failed"], 0.0, limit=10,
                                               after=(102.0, "a2"))] == ["a1", "a0"]
        assert [r.id for r in await store.unfinished()] == ["a0", "a2", "a3", "b0", "a4"]
        counts = await store.count_by_status(0.0)
        assert counts == {"queued": 5, "running": 0, "succeeded": 0, "failed": 1, "cancelled": 0}
        await store.close()

    asyncio.run(scenario())


def test_expiry_deletes_rows_and_bodies_and_frees_the_owners_bytes(tmp_path):
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path)
        await store.open()
        await store.create(_record("old", "alice", 1.0), b"x" * 10)
        await store.create(_record("new", "alice", 2.0), b"y" * 20)
        await store.save_answer("old", StoredAnswer(200, {}), b"z" * 5, status="succeeded",
                                finished=3.0, expires=50.0)
        assert await store.bytes_of("alice", now=10.0) == 35
        assert await store.get("old", now=60.0) is None  # past its expiry: gone for readers
        assert await store.bytes_of("alice", now=60.0) == 20
        assert await store.expire(now=60.0) == 1
        assert not (tmp_path / "requests" / "old").exists()
        assert not (tmp_path / "answers" / "old").exists()
        assert (tmp_path / "requests" / "new").exists()
        assert await store.get("old", now=0.0) is None and await store.get("new", now=0.0)
        await store.close()

    asyncio.run(scenario())


def test_bodies_of_rows_never_committed_are_removed_on_open(tmp_path):
    """A process killed between writing a body and committing its row leaves only a file."""
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path)
        await store.open()
        await store.create(_record("kept", "alice", 1.0), b"kept")
        await store.close()
        (tmp_path / "requests" / "orphan").write_bytes(b"half a job")
        (tmp_path / "answers" / "orphan.partial").write_bytes(b"half an answer")
        await store.open()
        assert sorted(p.name for p in (tmp_path / "requests").iterdir()) == ["kept"]
        assert list((tmp_path / "answers").iterdir()) == []
        await store.close()

    asyncio.run(scenario())


def test_the_database_is_a_plain_sqlite_file(tmp_path):
    async def scenario() -> None:
        store = SqliteJobStore(tmp_path)
        await store.open()
        await store.create(_record("a", "alice", 1.0), b"")
        await store.close()

    asyncio.run(scenario())
    with sqlite3.connect(tmp_path / "jobs.sqlite3") as db:
        assert db.execute("SELECT id, owner, status FROM jobs").fetchall() == [("a", "alice", "queued")]


def test_one_server_process_per_store(tmp_path):
    """A second server on the same data folder would run the first one's jobs as interrupted."""
    script = ("import asyncio, sys; from labcrunch_service.jobs.store import SqliteJobStore; "
              "asyncio.run(SqliteJobStore(sys.argv[1]).open())")

    def other_process() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                              text=True)

    async def scenario() -> None:
        store = SqliteJobStore(tmp_path)
        await store.open()
        refused = other_process()
        assert refused.returncode != 0 and "Another labcrunch server" in refused.stderr
        await store.close()
        assert other_process().returncode == 0  # free again

    asyncio.run(scenario())
