"""progress: cooperative loops stop at the job's deadline and record how far they got."""

from __future__ import annotations

import time

import pytest

from labcrunch_service import progress
from labcrunch_service.errors import ComputeTimeout


def test_check_deadline_stops_cooperative_loops():
    with progress.tracking(progress.Tracker(time.monotonic() + 0.1)), pytest.raises(ComputeTimeout):
        while True:
            progress.check_deadline()
            time.sleep(0.01)


def test_report_records_progress_and_stops_past_the_deadline():
    tracker = progress.Tracker(time.monotonic() + 60, limit_name="max_job_seconds")
    with progress.tracking(tracker):
        progress.report(3, 12, "steps")
    snapshot = tracker.snapshot()
    assert (snapshot["done"], snapshot["total"], snapshot["unit"], snapshot["fraction"]) == (3, 12, "steps", 0.25)
    tracker.deadline = time.monotonic() - 1
    with progress.tracking(tracker), pytest.raises(ComputeTimeout, match="max_job_seconds"):
        progress.report(4, 12, "steps")


def test_outside_a_tracked_computation_both_do_nothing():
    progress.report(1, 2, "steps")
    progress.check_deadline()
