"""One writer per run folder. `hir train` (each run of `hir compare` and `hir instructgpt` too)
holds `<output_dir>/.hir.lock` while it writes; a second process that wants the folder gets one
line naming the holder. The lock of a process that died (killed, power lost) is taken over,
with one line, so that `--resume` works after any crash."""

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

LOCK_NAME = ".hir.lock"


@contextmanager
def folder_lock(folder: str | os.PathLike, flag: str = "--output_dir") -> Iterator[None]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    mine = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}  # fmt: skip
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if holder == {}:  # released meanwhile
                continue
            if holder is not None and not _is_dead(holder):
                raise HIRError(
                    f"{flag} {folder} is in use by another hir process (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, since {holder.get('started')}): wait for it to end, or "
                    "choose another folder"
                ) from None
            what = (
                "an unreadable lock"
                if holder is None
                else f"the lock of process {holder.get('pid')}, which is gone"
            )
            print(f"hir: taking over {what} in {folder}", file=sys.stderr)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(mine, f)
        break
    try:
        yield
    finally:
        if (_read(path) or {}).get("pid") == os.getpid():
            path.unlink(missing_ok=True)


def _read(path: Path) -> dict | None:
    for _ in range(3):  # the holder may be between creating the file and writing it
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            time.sleep(0.1)
    return None


def _is_dead(holder: dict) -> bool:
    """Whether the holder is a process of this machine that no longer runs (a holder on
    another machine is taken to be alive: its pid cannot be checked from here)."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError, TypeError):
        return False
    return False
