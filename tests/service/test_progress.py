"""progress: cooperative loops stop at the job's deadline and record how far they got; every
long loop of the domains reports its progress."""

from __future__ import annotations

import time

import pytest

from labcrunch_service import progress
from labcrunch_service.errors import ComputeTimeout
from tests.helpers import tasks


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


LOOP = "def f(x):\n    s = 0.0\n    for i in range(3):\n        s = s + x * i\n    return s\n"

#: (route, body, unit, total): one request per long loop of the domains (pyhf's hypothesis tests,
#: limits and profiled scans report theirs in the pyhf domain's own tests).
LONG_LOOPS = [
    ("/v1/gradient", {"program": LOOP, "function": "f", "at": {"x": [0.5, 1.0, 2.0, 3.0]}},
     "points", 4),
    ("/v1/minimize", {"expression": "(x - 1)**2", "start": {"x": 3.0}, "learning_rate": 1e-4,
                      "steps": 3000}, "steps", 3000),
    ("/v1/fit/line", {"x": [0.0, 1.0, 2.0, 3.0], "y": [1.0, 3.0, 5.0, 7.0],
                      "method": "gradient_descent", "gradient_descent": {"epochs": 4}}, "epochs", 4),
    ("/v1/fractal", {"format": "json", "width": 16, "height": 12, "max_iter": 2000,
                     "center_x": -0.7436, "center_y": 0.1318, "scale": 0.01}, "iterations", 2000),
]


@pytest.mark.parametrize(("route", "body", "unit", "total"), LONG_LOOPS, ids=[c[0] for c in LONG_LOOPS])
def test_long_loops_report_progress_that_increases(api, workers, route, body, unit, total):
    """What a job shows as its progress: each domain's loop counts up through its work (the
    workers' trackers record every report)."""
    workers.setattr("labcrunch_service.progress", "Tracker", tasks.RecordingTracker)
    workers.call(tasks.RecordingTracker.SEEN.clear)
    response = api.post(route, json=body)
    assert response.status_code == 200, response.text
    seen = [report for each in workers.read("tests.helpers.tasks", "RecordingTracker.SEEN")
            for report in each]
    reports = [done for done, of, seen_unit in seen if seen_unit == unit and of == total]
    assert len(reports) >= 2, seen
    assert reports == sorted(reports) and reports[0] < reports[-1] <= total
