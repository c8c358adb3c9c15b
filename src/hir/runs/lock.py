"""One writer per run folder. `hir train` (each run of `hir compare` and `hir instructgpt` too)
holds `<output_dir>/.hir.lock` while it writes; a second process that wants the folder gets one
line naming the holder, or, through `unless_locked`, the holder itself (how several `hir compare`
processes share one comparison's runs). The lock of a process that died (killed, power lost)
is taken over, with one line, so that `--resume` works after any crash; so is the lock of a
process whose pid now belongs to another process (the holder is known by its pid and the time
its process started). A process that holds a folder's lock may take it again (a comparison's run
lock, then its trainer's)."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hir.errors import HIRError
from hir.runs.folders import LOCK as LOCK_NAME

_HELD: set[Path] = set()  # the lock files this process holds


@contextmanager
def folder_lock(
    folder: str | os.PathLike, flag: str = "--output_dir", name: str = LOCK_NAME, wait: bool = False
) -> Iterator[None]:
    """Hold `folder`'s lock while the block runs. Held by another live process: with `wait`,
    wait for it (for locks held seconds, such as a table being written), else one error line."""
    while True:
        with unless_locked(folder, name) as holder:
            if holder is None:
                yield
                return
        if not wait:
            raise HIRError(
                f"{flag} {folder} is in use by another hir process (pid {holder.get('pid')} on "
                f"{holder.get('host')}, since {holder.get('started')}): wait for it to end, or "
                "choose another folder"
            )
        time.sleep(0.2)


@contextmanager
def unless_locked(folder: str | os.PathLike, name: str = LOCK_NAME) -> Iterator[dict | None]:
    """Take `folder`'s lock and yield None, releasing it after the block; or, while another
    live process holds it, take nothing and yield the holder (pid, host, started, command)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / name).resolve()
    if path in _HELD:  # this process holds it already: the outer holder releases it
        yield None
        return
    holder = _take(path)
    if holder is not None:
        yield holder
        return
    _HELD.add(path)
    try:
        yield None
    finally:
        _HELD.discard(path)
        if (_read(path) or {}).get("pid") == os.getpid():
            path.unlink(missing_ok=True)


def live_holder(folder: str | os.PathLike, name: str = LOCK_NAME) -> dict | None:
    """The live process other than this one that holds `folder`'s lock, if any (takes nothing)."""
    holder = _read(Path(folder) / name)
    return holder if holder and _is_live_other(holder) else None


def _take(path: Path) -> dict | None:
    """Create the lock file as this process's; None once done, or the live holder."""
    mine = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv),
            "process_started": process_start_time(os.getpid())}  # fmt: skip
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if holder == {}:  # released meanwhile
                continue
            if holder is not None and _is_live_other(holder):
                return holder
            what = (
                "an unreadable lock"
                if holder is None
                else f"the lock of process {holder.get('pid')}, which is gone"
            )
            print(f"hir: taking over {what} in {path.parent}", file=sys.stderr)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(mine, f)
        return None


def _read(path: Path) -> dict | None:
    for _ in range(3):  # the holder may be between creating the file and writing it
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            time.sleep(0.1)
    return None


def _is_live_other(holder: dict) -> bool:
    """Whether the holder is a running process other than this one. A lock that names this
    process is one it does not hold (held ones are in `_HELD` and never read back): left by an
    earlier process of the same pid."""
    mine = holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()
    return not mine and not _is_dead(holder)


def _is_dead(holder: dict) -> bool:
    """Whether the holder is a process of this machine that no longer runs: its pid is free,
    or taken by a process that started at another time than the holder's (a holder on another
    machine is taken to be alive: its pid cannot be checked from here)."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        pid = int(holder["pid"])
    except (KeyError, ValueError, TypeError):
        return False
    started = process_start_time(pid)
    if started is None:  # gone, or its start cannot be read: the pid alone says
        return not _pid_exists(pid)
    recorded = holder.get("process_started")
    # Locks written before the start time was recorded: a live pid is taken to be the holder.
    return isinstance(recorded, (int, float)) and abs(started - recorded) > 1.0


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), or None where it cannot be read
    (no such process, or no psutil: the GPU image lacks it)."""
    try:
        import psutil
    except ImportError:
        return None
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
