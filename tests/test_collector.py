"""The CLI sets CPython's garbage collector for a batch run; the library leaves it alone."""

from __future__ import annotations

import subprocess
import sys


def _gc_after(code: str) -> tuple[int, int]:
    """(gc.get_threshold()[0], gc.get_freeze_count()) in a fresh interpreter after ``code``."""
    script = f"import gc\n{code}\nprint(gc.get_threshold()[0], gc.get_freeze_count())"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    young, frozen = done.stdout.split()[-2:]
    return int(young), int(frozen)


def test_an_import_run_freezes_what_its_imports_made_and_collects_less_often(tmp_path) -> None:
    data = tmp_path / "c.csv"
    data.write_text("email\na@example.com\n")
    young, frozen = _gc_after(
        "from bulk_events.cli import main\n"
        "try:\n"
        f"    main(['import', {str(data)!r}, '--event', 'e', '--dry-run', '-q',"
        f" '--state', {str(tmp_path / 'j.sqlite')!r}, '--report', {str(tmp_path / 'r.csv')!r}])\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code"
    )
    assert young == 50_000
    assert frozen > 50_000  # pandas, pandera, aiohttp...


def test_importing_the_library_changes_nothing() -> None:
    young, frozen = _gc_after("import bulk_events, bulk_events.importer, bulk_events.checker")
    assert (young, frozen) == (700, 0)


def test_a_collector_switched_off_stays_off() -> None:
    young, _ = _gc_after(
        "gc.set_threshold(0)\nfrom bulk_events import collector\ncollector.settle()"
    )
    assert young == 0
