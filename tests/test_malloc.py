"""The CLI asks glibc for one malloc arena; a user's own MALLOC_ARENA_MAX stands."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from bulk_events import checker, malloc

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="mallopt is glibc's",
)


def _ask(env: dict[str, str]) -> str:
    code = "from bulk_events.malloc import use_one_arena; print(use_one_arena())"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@glibc
def test_one_arena_is_asked_for_unless_the_user_chose() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert _ask(env) == "True"
    assert _ask({**env, "MALLOC_ARENA_MAX": "4"}) == "False"


def test_the_checker_process_gets_one_arena_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checking process started afresh, and the spawner that forks them, are started with
    MALLOC_ARENA_MAX=1, or with the user's own value."""
    from bulk_events import spawner

    seen: list[dict[str, str]] = []

    class Stop(Exception):
        pass

    def popen(*args: object, env: dict[str, str], **kwargs: object) -> None:
        seen.append(env)
        raise Stop

    monkeypatch.setattr(checker.subprocess, "Popen", popen)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    for start in (lambda: checker._Worker._start(None), spawner.Spawner):
        with pytest.raises(Stop):
            start()
    monkeypatch.setenv("MALLOC_ARENA_MAX", "3")
    for start in (lambda: checker._Worker._start(None), spawner.Spawner):
        with pytest.raises(Stop):
            start()
    one = malloc.ENV["MALLOC_ARENA_MAX"]
    assert [e["MALLOC_ARENA_MAX"] for e in seen] == [one, one, "3", "3"]
