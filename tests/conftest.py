"""Shared fixtures: spreadsheets built in the test, a live sandbox server, the CLI."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from files import workbook

from bulk_events.cli import main
from bulk_events.sandbox import Sandbox

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_data"


# Fixtures that start the sandbox in a process of its own. The tests that use them run a real
# importer process against it and measure pace, pauses and signals at the server, so under
# pytest-xdist (`--dist loadgroup`) they share one worker and run one after another: no two of
# them compete for the two cores, while the cheap in-process tests run beside them.
SERVER_PROCESS_FIXTURES = frozenset({"server", "server_factory", "failing_server"})


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups from the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("paced"))


@pytest.fixture(autouse=True)
def _private_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own journal folder and working directory; no real credentials leak in."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for name in (
        "SENDPULSE_CLIENT_ID",
        "SENDPULSE_CLIENT_SECRET",
        "SENDPULSE_API_URL",
        "SENDPULSE_EVENT_URL",
        "SENDPULSE_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def write_csv(
    path: Path, rows: list[list[Any]], *, encoding: str = "utf-8", delimiter: str = ","
) -> Path:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


def write_xlsx(
    path: Path, sheets: dict[str, list[list[Any]]], formats: dict[str, str] | None = None
) -> Path:
    """A workbook with one sheet per item; ``formats`` maps "Sheet!B2" (or "B2") to a number format."""
    return workbook(path, sheets, formats=formats)


async def wait_until(condition: Any, timeout: float = 10.0) -> None:
    """Poll `condition` until it holds; generous timeout for a busy machine."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


class FakeClock:
    """A clock that moves only when someone sleeps on it: timing tests without real time.

    A sleeper first lets every other ready task run (as real time would, since they take next to
    none), so work started at one instant is seen at that instant.
    """

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        for _ in range(10):
            await asyncio.sleep(0)
        self.now += seconds
        await asyncio.sleep(0)


def small_checker() -> tuple[Any, Any]:
    """A ChunkChecker of an email and a name column, and a chunk of three rows for it (the
    second row's email is invalid)."""
    import pandas as pd

    from bulk_events.checker import ChunkChecker
    from bulk_events.layout import plan_columns
    from bulk_events.schema import RowValidator

    layout = plan_columns(["email", "name"], types={}, mapping={}, file_label="c.csv")
    checker = ChunkChecker(layout, RowValidator(layout), identity="api:x", sent_event="e")
    chunk = pd.DataFrame(
        {"email": ["a@b.co", "nope", "c@d.co"], "name": ["A", "B", ""]},
        index=pd.Index([2, 3, 4]),
        dtype=object,
    )
    return checker, chunk


def read_report(path: Path) -> list[dict[str, str]]:
    """A CSV report's rows; its delimiter is the input's (`;` after a `;`-separated input)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        delimiter = ";" if f.readline().startswith("row;") else ","
        f.seek(0)
        return list(csv.DictReader(f, delimiter=delimiter))


def contacts(n: int, start: int = 0, **extra: Any) -> list[list[Any]]:
    """A header and n valid rows with distinct emails."""
    header = ["email", "name", *extra]
    return [header] + [
        [f"user{i}@example.com", f"User {i}", *extra.values()] for i in range(start, start + n)
    ]


class LiveSandbox:
    """A Sandbox served from its own thread and event loop, so a synchronous test can run the CLI."""

    def __init__(self, **kwargs: Any) -> None:
        self.box = Sandbox(**kwargs)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.url: str = self.call(self.box.start())

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def do(self, fn: Callable[[], Any]) -> Any:
        """Run fn in the server's thread (to change or read state safely)."""

        async def run() -> Any:
            return fn()

        return self.call(run())

    def bodies(self) -> list[dict[str, Any]]:
        return self.do(lambda: [a.body for a in self.box.accepted])

    def close(self) -> None:
        self.call(self.box.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def live() -> Iterator[Callable[..., LiveSandbox]]:
    started: list[LiveSandbox] = []

    def start(**kwargs: Any) -> LiveSandbox:
        s = LiveSandbox(**kwargs)
        started.append(s)
        return s

    yield start
    for s in started:
        s.close()


class Cli:
    """Runs `bulk-events` in-process through click's CliRunner."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = env or {}

    def __call__(
        self, *args: Any, env: dict[str, str] | None = None, input: str | None = None
    ) -> Any:
        runner = CliRunner()
        merged = {**self.env, **(env or {})}
        saved = {k: os.environ.get(k) for k in merged}
        os.environ.update(merged)
        try:
            return runner.invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture
def api(live: Callable[..., LiveSandbox]) -> Callable[..., tuple[LiveSandbox, Cli]]:
    """A live sandbox and a CLI whose environment points the REST API at it."""

    def make(**kwargs: Any) -> tuple[LiveSandbox, Cli]:
        server = live(**kwargs)
        env = {
            "SENDPULSE_API_URL": server.url,
            "SENDPULSE_CLIENT_ID": server.box.client_id,
            "SENDPULSE_CLIENT_SECRET": server.box.client_secret,
        }
        return server, Cli(env)

    return make


__all__ = ["REPO", "SAMPLES", "FakeClock", "contacts", "dt", "json", "read_report", "write_csv", "write_xlsx"]
