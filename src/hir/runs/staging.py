"""One write discipline for every command that writes a folder (`hir export`, `hir warm-up`,
`hir build-model`, `hir models fetch`): the target is checked before anything is written (a
non-empty folder is refused unless it is a model folder hir wrote and the user asked to
overwrite it: `hir.runs.folders`), the contents are written into a staging folder that this
call created under a unique name beside the target, with the marker that says hir wrote it,
and the staging folder becomes the target in one rename. On any failure the staging folder, and
only it, is removed: a folder this call did not create is never deleted.

    with staged_folder(Path("exp/model"), overwrite=False) as staging:
        model.save_pretrained(staging)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hir.errors import HIRError
from hir.runs.crash_points import crash_point
from hir.runs.folders import check_folder, mark_folder


def check_target(
    target: str | os.PathLike, overwrite: bool = False, flag: str = "--output_dir"
) -> Path:
    """`target` as a folder a command may write a model to: writable, not the current folder
    nor one that holds it, and empty, or (with `overwrite`) a model folder hir wrote."""
    target = Path(target)
    here = Path.cwd().resolve()
    if target.resolve() == here or target.resolve() in here.parents:
        raise HIRError(f"{flag} {target} is the current folder or holds it: choose another {flag}")
    found = check_folder(target, "model", flag)
    if found is not None and not overwrite:
        raise HIRError(
            f"{flag} {target} holds {found.description}: choose a new folder, or pass "
            "--overwrite_output_dir to replace it"
        )
    return target


@contextmanager
def staged_folder(
    target: str | os.PathLike,
    overwrite: bool = False,
    flag: str = "--output_dir",
    made_by: str = "hir",
) -> Iterator[Path]:
    """A fresh staging folder that becomes `target` when the block ends without an error.
    `made_by`: the command its marker names."""
    target = check_target(target, overwrite, flag)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging-"))
    staging.chmod(0o755)  # mkdtemp makes it private; a model folder may be shared
    try:
        mark_folder(staging, "model", made_by)
        yield staging
        crash_point("staged")
        replace_folder(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def remove_stale_staging(target: str | os.PathLike) -> None:
    """Remove what a write of `target` killed mid-way left beside it (its staging folder, or
    the old folder moved aside): for a command that resumes, before it writes `target` again."""
    target = Path(target)
    for pattern in (f".{target.name}.staging-*", f".{target.name}.replaced-*"):
        for path in target.parent.glob(pattern):
            shutil.rmtree(path, ignore_errors=True)


def replace_folder(source: Path, target: Path) -> None:
    """Move `source` to `target` in one rename; an existing `target` is first moved aside under
    a fresh name (so a crash leaves the old or the new folder, whole) and then removed."""
    aside = None
    if target.exists():
        aside = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.replaced-"))
        os.replace(target, aside / target.name)
    os.replace(source, target)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
