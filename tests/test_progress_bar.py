"""The progress bar in a real terminal with a size (tmux, 120x30): counts as they happen, log
lines above the bar rather than through it, and after Ctrl-C the bar stays where the run stopped."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import contacts, write_csv

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

ROWS = 200
BAR = re.compile(r"(\d+)/(\d+) \[.*sent=(\d+), failed=(\d+), unknown=(\d+)\]")


class Terminal:
    """One tmux session on a private socket, 120 columns by 30 rows."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = str(tmp_path / "tmux.sock")
        self.name = "bar"

    def tmux(self, *args: str) -> str:
        out = subprocess.run(
            ["tmux", "-S", self.socket, *args], capture_output=True, text=True, timeout=30
        )
        return out.stdout

    def start(self, command: str) -> None:
        self.tmux("new-session", "-d", "-x", "120", "-y", "30", "-s", self.name, command)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.name)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if re.search(pattern, text):
                return text
            assert time.monotonic() < deadline, f"{pattern!r} never showed:\n{text}"
            time.sleep(0.1)

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def failing_server():
    """A sandbox process whose first answers are HTTP 500: retried while the bar is up, and
    logged with -v."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bulk_events.sandbox",
            "--port",
            "0",
            "--latency",
            "0.01",
            "--misbehave",
            "500:4",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(10)


def test_bar_counts_logs_above_it_and_ctrl_c_stops_it_where_the_run_stopped(
    failing_server, tmp_path
):
    """Counts in the bar; log lines printed while it is up sit above it; Ctrl-C leaves it where
    the run stopped; the summary agrees with it."""
    url = failing_server
    write_csv(tmp_path / "c.csv", contacts(ROWS))
    env = {
        "SENDPULSE_API_URL": url,
        "SENDPULSE_CLIENT_ID": "sandbox-client",
        "SENDPULSE_CLIENT_SECRET": "sandbox-secret",
        "PYTHONPATH": os.pathsep.join(sys.path),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    args = [
        sys.executable, "-m", "bulk_events", "import", "c.csv", "--event", "e", "--rate", "20",
        "--report", "r.csv", "--state", "j.sqlite", "-v",
    ]  # fmt: skip
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command = (
        f"cd {shlex.quote(str(tmp_path))} && env {exports} {shlex.join(args)} 2>&1; "
        "echo EXIT=$?; sleep 120"
    )
    term = Terminal(tmp_path)
    term.start(command)
    try:
        running = term.wait_for(r"sent=([3-9]\d|\d{3})")
        assert BAR.search(running), running
        term.tmux("send-keys", "-t", term.name, "C-c")
        final = term.wait_for(r"EXIT=\d+")
    finally:
        term.close()
    assert "EXIT=130" in final, final
    lines = final.splitlines()
    bars = [m for line in lines if (m := BAR.search(line))]
    assert bars, final
    done, total, sent, failed, unknown = (int(g) for g in bars[-1].groups())
    assert total == ROWS and 30 <= done < ROWS  # stopped where the run stopped, not at 100%
    assert sent <= done and failed == 0 and unknown == 0
    assert "100%" not in "\n".join(lines)
    # Every message printed while the bar was up sits on its own line, never inside the bar.
    said = [line for line in lines if "Ctrl-C: finishing the requests in flight" in line]
    assert said and not BAR.search(said[0]) and "row/s" not in said[0]
    retries = [line for line in lines if "will retry" in line]
    assert retries, final
    for line in lines:
        if " INFO " in line:
            assert not BAR.search(line) and "row/s" not in line, line
    summary = next(line for line in lines if line.startswith("bulk-events: ") and " rows: " in line)
    assert f"{sent} sent" in summary
