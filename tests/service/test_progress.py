"""check_deadline: cooperative loops stop at the job's wall time; every long loop of the domains
reports its progress."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from labcrunch_service import progress
from labcrunch_service.compute import Runner
from labcrunch_service.errors import ComputeTimeout
from tests.helpers import tasks


def test_check_deadline_stops_cooperative_loops():
    runner = Runner(1, 0, wall_seconds=0.1)
    with pytest.raises(ComputeTimeout):
        asyncio.run(runner.run(tasks.SPIN))
    runner.shutdown()


@dataclass
class RecordingTracker(progress.Tracker):
    """A tracker that keeps every (done, total, unit) its computation reported."""

    made: ClassVar[list[RecordingTracker]] = []
    seen: list[tuple[float, float | None, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        RecordingTracker.made.append(self)

    def check(self) -> None:
        if self.unit and (not self.seen or self.seen[-1] != (self.done, self.total, self.unit)):
            self.seen.append((self.done, self.total, self.unit))
        super().check()


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
def test_long_loops_report_progress_that_increases(api, monkeypatch, route, body, unit, total):
    """What a job shows as its progress: each domain's loop counts up through its work."""
    monkeypatch.setattr(progress, "Tracker", RecordingTracker)
    RecordingTracker.made.clear()
    response = api.post(route, json=body)
    assert response.status_code == 200, response.text
    (tracker,) = RecordingTracker.made
    reports = [done for done, of, seen_unit in tracker.seen if seen_unit == unit and of == total]
    assert len(reports) >= 2, tracker.seen
    assert reports == sorted(reports) and reports[0] < reports[-1] <= total
