"""check_deadline: cooperative loops stop at the job's wall time."""

from __future__ import annotations

import asyncio

import pytest

from labcrunch_service.compute import Runner
from labcrunch_service.errors import ComputeTimeout
from tests.helpers import tasks


def test_check_deadline_stops_cooperative_loops():
    runner = Runner(1, 0, wall_seconds=0.1)
    with pytest.raises(ComputeTimeout):
        asyncio.run(runner.run(tasks.SPIN))
    runner.shutdown()
