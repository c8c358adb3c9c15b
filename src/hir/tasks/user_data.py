"""Users' own data: JSONL files and Hugging Face datasets with a query and an answer column,
and their feedback functions (a callable, or a `module:function` path)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from hir.callables import load_callable
from hir.errors import HIRError
from hir.runs.fileio import read_jsonl_objects
from hir.tasks.base import Example, Task, number_or_exact_match_any


def load_feedback(spec: str | Callable) -> Callable:
    """A feedback function (`hir.tasks.feedback`: `(answer, example) -> float`, or TRL's
    `(prompts, completions, **columns) -> list[float]`) from a callable or a `module:function`
    path (`package.module:function` on sys.path, or `path/to/file.py:function`)."""
    return load_callable(spec, "feedback")


def examples_from_records(
    records: Iterable[Mapping],
    source: str,
    query_field: str = "query",
    answer_field: str = "answer",
) -> list[Example]:
    examples = []
    first_record_of: dict[str, int] = {}
    for index, record in enumerate(records):
        for field_name in (query_field, answer_field):
            if field_name not in record:
                raise HIRError(
                    f"{source}: record {index} has no {field_name!r} field (it has "
                    f"{', '.join(map(repr, record)) or 'none'}); name the column with "
                    f"--query-field / --answer-field"
                )
        answer = record[answer_field]
        forms = list(answer) if isinstance(answer, (list, tuple)) else [answer]
        if not forms:
            raise HIRError(f"{source}: record {index} has an empty {answer_field!r} list")
        for form in (record[query_field], *forms):
            # str() would turn null into "None" and an object into its repr: train on neither.
            if form is None or isinstance(form, (dict, list)):
                raise HIRError(
                    f"{source}: record {index} has {json_type(form)} as its query or answer; "
                    "give text or numbers (an answer may be a list of accepted forms)"
                )
            # json reads 1e400 as inf and NaN as nan: text that means no number at all.
            if isinstance(form, float) and not math.isfinite(form):
                raise HIRError(
                    f"{source}: record {index} has the number {form} as its query or answer; "
                    "give a finite number, or the answer as text"
                )
            if isinstance(form, str) and not _is_utf8(form):
                raise HIRError(
                    f"{source}: record {index} has text with an unpaired surrogate "
                    "(a lone \\ud800-\\udfff escape) in its query or answer; fix the text"
                )
        forms = [str(form) for form in forms]
        if not str(record[query_field]).strip() or not all(f.strip() for f in forms):
            raise HIRError(
                f"{source}: record {index} has an empty {query_field!r} or {answer_field!r}; "
                "every example needs a query and an answer (drop or fill the record)"
            )
        example_id = str(record.get("id", index))
        if example_id in first_record_of:
            raise HIRError(
                f"{source}: records {first_record_of[example_id]} and {index} share the id "
                f"{example_id!r}; ids must be unique (drop the 'id' field to number records)"
            )
        first_record_of[example_id] = index
        # Every column but the query, the answer's own included: a TRL-style reward function
        # reads the columns by their names (`hir.tasks.feedback.dataset_columns`).
        extra = {k: v for k, v in record.items() if k != query_field}
        examples.append(
            Example(
                id=example_id,
                query=str(record[query_field]),
                target=forms[0],
                accepted=tuple(forms[1:]),
                meta=MappingProxyType(extra),
            )
        )
    if not examples:
        raise HIRError(f"{source} has no examples: add at least one record")
    return examples


def load_jsonl_task(path: str, query_field: str = "query", answer_field: str = "answer") -> Task:
    records = [record for _, record in read_jsonl_objects(path, "data")]
    return Task(
        name=f"jsonl:{path}",
        examples=examples_from_records(records, path, query_field, answer_field),
        feedback=number_or_exact_match_any,
        description=f"user data from {path}",
    )


def load_hf_task(
    name_or_path: str,
    split: str = "train",
    query_field: str = "query",
    answer_field: str = "answer",
) -> Task:
    """A Hugging Face dataset: a folder written by `Dataset.save_to_disk`, or a name that
    `datasets.load_dataset` understands (a hub id or a local data folder)."""
    import datasets

    try:
        if (Path(name_or_path) / "dataset_info.json").is_file() or (
            Path(name_or_path) / "dataset_dict.json"
        ).is_file():
            dataset = datasets.load_from_disk(name_or_path)
            if isinstance(dataset, datasets.DatasetDict):
                dataset = dataset[split]
        else:
            dataset = datasets.load_dataset(name_or_path, split=split)
    except Exception as exc:  # noqa: BLE001 - many failure types; one line for the user
        raise HIRError(
            f"cannot load Hugging Face dataset {name_or_path!r} (split {split!r}): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    return task_from_dataset(dataset, f"hf:{name_or_path}", query_field, answer_field)


def task_from_dataset(
    dataset, name: str = "dataset", query_field: str = "query", answer_field: str = "answer"
) -> Task:
    """A task from an in-memory `datasets.Dataset` (or any iterable of dicts)."""
    return Task(
        name=name,
        examples=examples_from_records(dataset, name, query_field, answer_field),
        feedback=number_or_exact_match_any,
        description=f"user data {name}",
    )


def json_type(value) -> str:
    return {type(None): "null", dict: "an object", list: "a list"}.get(
        type(value), type(value).__name__
    )


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
