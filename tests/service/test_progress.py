"""check_deadline: cooperative loops stop at the job's wall time."""

from __future__ import annotations

import asyncio
import time

import pytest

from labcrunch_service.compute import Runner
from labcrunch_service.errors import ComputeTimeout
from labcrunch_service.progress import check_deadline


def test_check_deadline_stops_cooperative_loops():
    runner = Runner(1, 0, wall_seconds=0.1)

    def spin():
        while True:
            check_deadline()
            time.sleep(0.01)

    with pytest.raises(ComputeTimeout):
        asyncio.run(runner.run(spin))
    runner.shutdown()
