"""Settings from the environment; unusable settings fail at start-up."""

from __future__ import annotations

import pytest

from labcrunch_service.settings import Settings


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LABCRUNCH_MAX_QUEUED_JOBS", "7")
    monkeypatch.setenv("LABCRUNCH_LIMITS__MAX_POINTS", "123")
    monkeypatch.setenv("LABCRUNCH_API_KEYS", '["a", "b"]')
    s = Settings()
    assert s.max_queued_jobs == 7 and s.limits.max_points == 123 and s.api_keys == ["a", "b"]


@pytest.mark.parametrize("env", [{"LABCRUNCH_MAX_RUNNING_PER_OWNER": "0"},
                                 {"LABCRUNCH_LIMITS__MAX_WALL_SECONDS": "-1"}])
def test_unusable_settings_fail_at_start_up(monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError):
        Settings()
