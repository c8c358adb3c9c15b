"""The paper's twelve BIG-bench tasks, read with the public HIR code's exact protocol.

Data comes from, in this order: a folder the caller names, the folder in $HIR_BIGBENCH_DIR, or a
cache filled once from the `bigbench==1.0.0` source package on PyPI. The package is streamed and
only the needed `task.json` files are extracted; it is never installed (its requirements pull
TensorFlow).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from types import MappingProxyType

from hir.cache import hir_cache
from hir.errors import HIRError
from hir.tasks.base import Example, Task, exact_match
from hir.tasks.extraction import ANSWER_HINTS

# Short name -> folder under bigbench/benchmark_tasks/, in the paper's order.
PAPER_TASKS: dict[str, str] = {
    "logical_deduction_three_objects": "logical_deduction/three_objects",
    "logical_deduction_five_objects": "logical_deduction/five_objects",
    "logical_deduction_seven_objects": "logical_deduction/seven_objects",
    "tracking_shuffled_objects_three_objects": "tracking_shuffled_objects/three_objects",
    "tracking_shuffled_objects_five_objects": "tracking_shuffled_objects/five_objects",
    "tracking_shuffled_objects_seven_objects": "tracking_shuffled_objects/seven_objects",
    "date_understanding": "date_understanding",
    "object_counting": "object_counting",
    "penguins_in_a_table": "penguins_in_a_table",
    "geometric_shapes": "geometric_shapes",
    "reasoning_about_colored_objects": "reasoning_about_colored_objects",
    "word_sorting": "word_sorting",
}

SDIST_URL = (
    "https://files.pythonhosted.org/packages/95/f8/"
    "c019b3579df548a04cac12342cfcb878e50ddf6cfcd7fddba8cfc721c157/bigbench-1.0.0.tar.gz"
)
SDIST_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
_MEMBER_ROOT = "bigbench/benchmark_tasks/"


def task_folder(short_name: str) -> str:
    """`tracking_shuffled_objects_three_objects` -> `tracking_shuffled_objects/three_objects`.
    Names outside the paper's twelve are taken as a folder name as they are."""
    return PAPER_TASKS.get(short_name, short_name)


def default_cache_dir() -> Path:
    return hir_cache() / "bigbench-1.0.0"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> tuple[Path, bool]:
    """The folder to read from, and whether it is hir's own cache (which may be filled)."""
    chosen = data_dir or os.environ.get("HIR_BIGBENCH_DIR")
    if not chosen:
        return default_cache_dir(), True
    path = Path(chosen).expanduser()
    if not path.is_dir():
        source = "--bigbench-dir" if data_dir else "$HIR_BIGBENCH_DIR"
        raise HIRError(
            f"BIG-bench folder {str(path)!r} (from {source}) does not exist; "
            "point it at a folder holding <task>/task.json, or unset it to download the data"
        )
    # Accept the root of a BIG-bench checkout as well as its benchmark_tasks folder.
    nested = path / "bigbench" / "benchmark_tasks"
    return (nested if nested.is_dir() else path), False


def load_bigbench_task(
    short_name: str,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    shuffle_options: int | None = None,
) -> Task:
    """One BIG-bench task. `shuffle_options` (a seed) permutes each multiple-choice example's
    options, so that the right letter no longer follows the file's order (in the public
    protocol date_understanding's answer is (A) in 99% of examples); None keeps the protocol."""
    folder, is_cache = resolve_data_dir(data_dir)
    path = folder / task_folder(short_name) / "task.json"
    if not path.is_file() and is_cache and download and short_name in PAPER_TASKS:
        fetch_bigbench(folder)
    if not path.is_file():
        raise HIRError(
            f"no BIG-bench file {path}: the task name {short_name!r} may be wrong (see `hir "
            "tasks list`); for a task outside the paper's twelve, pass --bigbench-dir with it"
        )
    examples = parse_bigbench_file(path, short_name, shuffle_options)
    multiple_choice = all(re.fullmatch(r"\([A-Z]\)", e.target) for e in examples)
    numeric = all(e.target.isdigit() for e in examples)
    kind = "option" if multiple_choice else "number" if numeric else "first_line"
    return Task(
        name=f"bigbench/{short_name}",
        examples=examples,
        feedback=exact_match,
        description=f"BIG-bench {task_folder(short_name)} ({path})"
        + ("" if shuffle_options is None else f", options shuffled with seed {shuffle_options}"),
        answer_format=_ANSWER_FORMATS.get(kind),
        chat_extraction=kind,
        chat_answer_hint=ANSWER_HINTS[kind],
    )


# What a well-formed answer looks like, per kind of BIG-bench task (the hint a chat model is
# told is `ANSWER_HINTS`).
_ANSWER_FORMATS = {"option": r"\([A-Z]\)", "number": r"\d+"}


def parse_bigbench_file(
    path: Path, short_name: str, shuffle_options: int | None = None
) -> list[Example]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise HIRError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
            "replace it with the task's original task.json"
        ) from exc
    if not isinstance(data, dict) or not data.get("examples"):
        raise HIRError(
            f"{path} has no examples: a BIG-bench task.json needs a non-empty 'examples' list"
        )
    prefix = data.get("task_prefix", "") + data.get("example_input_prefix", "")
    return [
        _render_example(raw, index, prefix, path, short_name, shuffle_options)
        for index, raw in enumerate(data["examples"])
    ]


def _render_example(
    raw: dict, index: int, prefix: str, path: Path, short_name: str,
    shuffle_options: int | None = None,
) -> Example:  # fmt: skip
    """One BIG-bench example as the public code renders it (online_sampler.py / evaluation.py)."""
    if not isinstance(raw, dict) or "input" not in raw:
        raise HIRError(f"{path}: example {index} has no 'input'; every example needs one")
    prefix = prefix.replace("\n\n", "\n")
    example_id = f"{short_name}-{index}"
    if "target_scores" in raw:
        options = list(raw["target_scores"].keys())
        scores = list(raw["target_scores"].values())
        if shuffle_options is not None:
            # Seeded per example: the same seed gives the same order whatever else is loaded.
            order = list(range(len(options)))
            random.Random(f"{shuffle_options}-{index}").shuffle(order)
            options, scores = [options[i] for i in order], [scores[i] for i in order]
        if 1 not in scores:
            raise HIRError(
                f"{path}: example {index} has no option with score 1 in 'target_scores'; "
                "mark the right option with 1"
            )
        correct = scores.index(1)
        lines = "\n".join(f"({chr(65 + i)}) {option}" for i, option in enumerate(options))
        query = prefix + raw["input"].replace("\n\n", "") + "\nOptions:\n" + lines
        return Example(
            example_id,
            query,
            f"({chr(65 + correct)})",
            accepted=(options[correct],),
            meta=MappingProxyType({"options": tuple(options)}),  # for option extraction
        )
    if "target" in raw:
        target = raw["target"]
        if isinstance(target, list):
            if not target:
                raise HIRError(f"{path}: example {index} has an empty 'target' list")
            # The public code takes element [1] of a list target, e.g. "9" of ["nine", "9"].
            canonical = str(target[1] if len(target) > 1 else target[0])
            accepted = tuple(str(t) for t in target if str(t) != canonical)
        else:
            canonical, accepted = str(target), ()
        query = prefix + raw["input"].replace("\n\n", "\n")
        return Example(example_id, query, canonical, accepted=accepted)
    raise HIRError(f"{path}: example {index} lacks a target: give it 'target' or 'target_scores'")


def fetch_bigbench(cache_dir: Path) -> None:
    """Stream the bigbench 1.0.0 sdist from PyPI and extract the paper's twelve task.json
    files into `cache_dir`, checking the archive's sha256."""
    wanted = {f"{_MEMBER_ROOT}{folder}/task.json" for folder in PAPER_TASKS.values()}
    url = os.environ.get("HIR_BIGBENCH_URL", SDIST_URL)
    expected = os.environ.get("HIR_BIGBENCH_SHA256", SDIST_SHA256)
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache_dir.parent, prefix=".bigbench-download-"))
    print(f"hir: downloading BIG-bench task files once from {url} into {cache_dir}", flush=True)
    try:
        try:
            response = urllib.request.urlopen(url, timeout=60)  # noqa: S310 - fixed https URL
        except OSError as exc:
            raise HIRError(
                f"could not download BIG-bench from {url} ({exc}); offline? Get the task files "
                "(e.g. `pip download --no-deps --no-binary :all: bigbench==1.0.0`, then unpack) "
                "and pass --bigbench-dir or set HIR_BIGBENCH_DIR"
            ) from exc
        digest = hashlib.sha256()
        reader = _HashingReader(response, digest)
        with response, tarfile.open(fileobj=reader, mode="r|gz") as archive:
            for member in archive:
                # Archive members are prefixed with "bigbench-1.0.0/".
                inner = member.name.split("/", 1)[-1]
                if member.isfile() and inner in wanted:
                    target = staging / inner[len(_MEMBER_ROOT) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.extractfile(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
            # Read what tarfile left unread, so the digest covers the whole file.
            while reader.read(1 << 20):
                pass
        if digest.hexdigest() != expected:
            raise HIRError(
                f"the download from {url} has sha256 {digest.hexdigest()}, expected {expected}; "
                "the file is corrupt or not bigbench 1.0.0, try again"
            )
        for extracted in staging.rglob("task.json"):
            destination = cache_dir / extracted.relative_to(staging)
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(extracted, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class _HashingReader:
    """A file-like wrapper that feeds every byte it reads into a hash."""

    def __init__(self, raw, digest) -> None:
        self._raw, self._digest = raw, digest

    def read(self, size: int = -1) -> bytes:
        chunk = self._raw.read(size)
        self._digest.update(chunk)
        return chunk
