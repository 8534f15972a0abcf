"""The progress bar as a person sees it: the CLI in a real pseudo-terminal with a size (a bare pty
is 0x0, and tqdm draws nothing there), its output read back as the terminal received it."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from conftest import SAMPLES, write_csv

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="a POSIX pseudo-terminal")

ROWS, COLUMNS = 30, 120


def _in_terminal(args: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """Run ``bulk-events args`` with stdin, stdout and stderr on a 30x120 pseudo-terminal;
    its exit code and everything it wrote there."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    env = {**os.environ, "XDG_STATE_HOME": str(cwd / "state"), "COLUMNS": str(COLUMNS)}
    env.pop("CI", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulk_events", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    os.close(follower)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([leader], [], [], left)
            if not ready:
                break
            try:
                data = os.read(leader, 65536)
            except OSError:  # the other side is closed: the process has ended
                break
            if not data:
                break
            out += data
    finally:
        os.close(leader)
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
    code = proc.wait(timeout=30)
    assert time.monotonic() < deadline, f"still running after {timeout} s:\n{out.decode()}"
    return code, out.decode("utf-8", "replace")


def _last_bar(output: str) -> str:
    """The bar as it was last drawn (tqdm redraws its line after a carriage return)."""
    drawn = [part for part in re.split(r"[\r\n]", output) if re.search(r"\d+/\d+", part)]
    assert drawn, output
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", drawn[-1])


def test_a_dry_run_bar_ends_at_every_row_of_the_file(tmp_path):
    """Tens of thousands of rows decided in a few chunks: the bar, moved a few times a second
    rather than once a row, still ends on the last row."""
    rows = [["email", "name"]] + [[f"user{i}@example.com", f"N{i}"] for i in range(30_000)]
    rows[5][0] = "not an email"
    path = write_csv(tmp_path / "c.csv", rows)
    code, output = _in_terminal(
        ["import", str(path), "--event", "e", "--dry-run", "--report", "r.csv"], tmp_path
    )
    assert code == 1, output  # one invalid row
    assert "bulk-events: reading c.csv" in output  # on a terminal: announced before the bar
    bar = _last_bar(output)
    assert "30000/30000" in bar and "100%" in bar, bar
    # Beside it, what a dry run finds; nothing is sent, so nothing is counted as sent.
    assert "valid=29999" in bar and "invalid=1" in bar and "skipped=0" in bar, bar
    assert "sent=" not in bar, bar
    assert "30000 rows: 29999 valid, 1 invalid" in output


def test_a_sandbox_run_bar_counts_what_was_sent(tmp_path):
    """The README's first command in a terminal: the bar's last state counts every row sent."""
    code, output = _in_terminal(
        [
            "import",
            str(SAMPLES / "customers.xlsx"),
            "--event",
            "registration",
            "--sandbox",
            "--report",
            "r.csv",
        ],
        tmp_path,
    )
    assert code == 0, output
    bar = _last_bar(output)
    assert "14/14" in bar and "sent=14" in bar, bar
    assert "14 rows: 14 sent" in output
