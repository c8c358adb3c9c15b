"""Small file helpers. Every write that a crash could corrupt goes through a temporary file and
an atomic rename, so a reader sees either the old content or the new one, never half of it."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl_objects(path: str | os.PathLike, what: str) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a user's JSONL file; a missing file,
    a line that is not JSON or not a JSON object is an `HIRError` naming the line."""
    from hir.errors import HIRError

    if not Path(path).is_file():
        raise HIRError(f"{what} file {str(path)!r} does not exist")
    records = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HIRError(
                    f"{path} line {number} is not UTF-8 (byte {raw[exc.start]:#04x} at column "
                    f"{exc.start + 1}); save the file as UTF-8"
                ) from exc
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise HIRError(f"{path} line {number} is not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise HIRError(f"{path} line {number} is not a JSON object")
            records.append((number, record))
    return records


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def remove_stale_temporary_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the `.NAME.*.tmp` files that an atomic write killed mid-way left in `folder`
    (never the file it was replacing); returns what was removed."""
    removed = []
    for path in Path(folder).glob(".*.tmp"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def require_writable_folder(path: str | os.PathLike, flag: str = "--output_dir") -> None:
    """Refuse, before anything is written, a folder that cannot be one or cannot be written: a
    file, a path under a file, or under a read-only folder."""
    from hir.errors import HIRError

    path = Path(path).absolute()
    for candidate in (path, *path.parents):
        if candidate.is_symlink() and not candidate.exists():
            raise HIRError(f"{flag} {path}: {candidate} is a symbolic link that leads nowhere (a loop, or its target is gone): choose another {flag}")  # fmt: skip
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        where = "is a file" if existing == path else f"lies under {existing}, which is a file"
        raise HIRError(f"{flag} {path} {where}, not a folder: choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise HIRError(f"{flag} {path} cannot be written ({existing} is read-only): choose another {flag}")  # fmt: skip


def require_writable_file(path: str | os.PathLike, flag: str = "--output") -> None:
    """Refuse, before anything is written, a file target that is a folder or cannot be written
    (its folder is a file, or read-only)."""
    from hir.errors import HIRError

    path = Path(path).absolute()
    if path.is_dir():
        raise HIRError(f"{flag} {path} is a folder, not a file: name a file in it, e.g. {path / 'data.jsonl'}")  # fmt: skip
    if path.exists() and not os.access(path, os.W_OK):
        raise HIRError(f"{flag} {path} is read-only: choose another {flag}")
    require_writable_folder(path.parent, flag)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
