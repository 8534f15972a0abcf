"""Temporary reports of killed runs: each writer notes its temporary file, and a later run,
wherever it writes, removes what the notes of dead runs point to (only regular files of this
user, named ``.NAME.PID.tmp`` with that same PID, whose process is gone)."""

from __future__ import annotations

import glob
import hashlib
import os
import stat
from pathlib import Path

from .private import create_private, make_private_dirs

# Linux caps process ids at 2**22; a bigger "pid" in a file name is not one of ours.
_MAX_PID = 1 << 22


def _pid_of(tmp: Path) -> int | None:
    """The process id in a temporary report's name ``.NAME.PID.tmp``, if it has one."""
    name = tmp.name
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    pid = name[: -len(".tmp")].rsplit(".", 1)[-1]
    if not pid.isdigit() or not 0 < int(pid) < _MAX_PID:
        return None
    return int(pid)


def _is_dead(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, ValueError):  # alive (someone else's), or no pid
        return False
    return False


def _remove_if_orphan(tmp: Path) -> None:
    """Delete ``tmp`` if it is a temporary report of ours whose run has died: a regular file
    owned by this user, named ``.NAME.PID.tmp`` with a PID that is no longer alive."""
    pid = _pid_of(tmp)
    if pid is None or not _is_dead(pid):
        return
    try:
        st = tmp.lstat()
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid():
            tmp.unlink()
    except OSError:  # gone already, or not ours to delete
        pass


def remove_orphans(directory: Path, name: str) -> None:
    """Delete half-written reports left by runs that were killed (they hold personal data):
    this report's, and the default-named ones (whose names carry a time, so differ per run),
    beside the report; then every one an earlier run of this user recorded as unfinished,
    wherever it was (see :func:`claims_dir`)."""
    patterns = {f".{glob.escape(name)}.*.tmp", ".bulk-events-report-*.*.tmp"}
    for tmp in {p for pattern in patterns for p in directory.glob(pattern)}:
        _remove_if_orphan(tmp)
    _remove_claimed_orphans()


def claims_dir() -> Path:
    """Where each run notes the temporary reports it is writing, one small file per report
    (``$XDG_STATE_HOME/bulk-events/unfinished-reports``): a run killed before it could clean up
    leaves its note, and the next run, wherever its own report goes, deletes what it names."""
    state_home = os.environ.get("XDG_STATE_HOME", "")
    base = Path(state_home) if os.path.isabs(state_home) else Path.home() / ".local" / "state"
    return base / "bulk-events" / "unfinished-reports"


def _claim_path(tmp: Path) -> Path:
    digest = hashlib.sha256(os.fsencode(tmp)).hexdigest()[:16]
    return claims_dir() / f"{os.getpid()}-{digest}"


def claim(tmp: Path) -> Path | None:
    """Note ``tmp`` as being written by this process; None when the note cannot be made (a
    read-only home must not stop a report: only the clean-up after a kill is lost)."""
    claim = _claim_path(tmp)
    try:
        make_private_dirs(claim.parent)
        with create_private(claim) as f:
            f.write(os.fsencode(tmp.absolute()))
    except OSError:
        return None
    return claim


def _remove_claimed_orphans() -> None:
    try:
        claims = list(claims_dir().iterdir())
    except OSError:
        return
    for claim in claims:
        pid = claim.name.split("-", 1)[0]
        if not pid.isdigit() or not _is_dead(int(pid)):
            continue
        try:
            tmp = Path(os.fsdecode(claim.read_bytes()))
        except OSError:
            continue
        # The note names a file; delete it only if its name carries that same dead pid.
        if _pid_of(tmp) == int(pid):
            _remove_if_orphan(tmp)
        claim.unlink(missing_ok=True)
