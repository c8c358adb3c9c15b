"""Answer extraction: the answer inside a model's output, taken before every feedback call.

Chat models answer in sentences ("The correct answer is (C).", "You have 3 instruments."), and
exact match would score those 0. An extractor turns the raw output into the answer the feedback
function checks; the raw output is what the model is trained on and what the buffer keeps.

Extractors, by name (`--extract`):
- `none`: the output as it is (the paper's protocol);
- `option`: a multiple-choice letter, as "(C)"; also found from "answer is C" or from the
  text of exactly one option;
- `number`: the first number, in digits or words ("three" -> "3"), after "answer is" if present;
- `first_line`: the first non-empty line;
- `regex:PATTERN`: the first match of PATTERN (its first group, if it has one);
- `module:function` or `file.py:function`: a callable (output, example) -> answer.
An output where the extractor finds nothing is passed on unchanged (and scores as ill-formed).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from hir.errors import HIRError
from hir.tasks.example import Example

Extractor = Callable[[str, Example], str]

NAMED = ("none", "option", "number", "first_line")

_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
_NUMBER = re.compile(r"\b(\d+|" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*", re.IGNORECASE)
_LETTER_IN_PARENS = re.compile(r"\(([A-Z])\)")
_LETTER_FIRST = re.compile(r"^([A-Z])(?:[).:]|$)")  # "B) red", "B.", "B"
_LETTER_NAMED = re.compile(r"(?i:answer\s*(?:is|:)|option)\s*([A-Z])\b")  # "Answer: B"


# The sentence a chat model is told after the instruction, per kind of answer extracted.
ANSWER_HINTS = {
    "option": "Answer with the option letter only.",
    "number": "Answer with a number only.",
    "first_line": "Answer on one line.",
}


def no_extraction(output: str, example: Example) -> str:
    return output


def option_letter(output: str, example: Example) -> str:
    """ "(C)" from "The correct answer is (C).", "C) ...", "Answer: C" or the text of one option
    (the options are `example.meta["options"]` where the task keeps them)."""
    options = example.meta.get("options", ())
    valid = {chr(65 + i) for i in range(len(options))} if options else None
    for pattern in (_LETTER_IN_PARENS, _LETTER_FIRST, _LETTER_NAMED):
        found = pattern.search(output.strip())
        if found and (valid is None or found.group(1) in valid):
            return f"({found.group(1)})"
    text = output.lower()
    named = [i for i, option in enumerate(options) if str(option).lower().rstrip(".") in text]
    if len(named) == 1:
        return f"({chr(65 + named[0])})"
    return output


def first_number(output: str, example: Example) -> str:
    """The number after "answer is", else the first number, as digits."""
    after = _ANSWER_IS.split(output, maxsplit=1)
    for text in (after[1], output) if len(after) == 2 else (output,):
        found = _NUMBER.search(text)
        if found:
            token = found.group(1).lower()
            return str(_NUMBER_WORDS.get(token, token if not token.isdigit() else int(token)))
    return output


def first_line(output: str, example: Example) -> str:
    return next((line.strip() for line in output.splitlines() if line.strip()), output)


def regex_extractor(pattern: str) -> Extractor:
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise HIRError(
            f"the extraction regex {pattern!r} does not compile ({exc}); fix it, e.g. "
            r"--extract 'regex:answer is (\w+)'"
        ) from exc

    def extract(output: str, example: Example) -> str:
        found = compiled.search(output)
        if found is None:
            return output
        return found.group(1) if compiled.groups else found.group(0)

    extract.__name__ = f"regex:{pattern}"
    return extract


_BY_NAME: dict[str, Extractor] = {
    "none": no_extraction,
    "option": option_letter,
    "number": first_number,
    "first_line": first_line,
}


def make_extractor(spec: str | Extractor) -> Extractor:
    """The extractor a name, `regex:PATTERN` or `module:function` spec stands for."""
    if callable(spec):
        return spec
    if spec in _BY_NAME:
        return _BY_NAME[spec]
    if spec.startswith("regex:"):
        return regex_extractor(spec.removeprefix("regex:"))
    if ":" in spec:
        from hir.callables import load_callable

        return load_callable(spec, "answer extractor")
    raise HIRError(
        f"unknown answer extraction {spec!r}: use one of {', '.join(NAMED)}, auto, "
        "regex:PATTERN or module:function"
    )
