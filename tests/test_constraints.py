"""Constraint instructions (hir.tasks.constraints): generated training requests that are never
IFEval's test prompts, constraints drawn from lm-eval's registry without conflicts, and the
hindsight relabeler checked against hand-read outputs: every constraint it gives is one the
output satisfies."""

import random

import pytest
from helpers import SHARED_IFEVAL

pytest.importorskip(
    "lm_eval", reason="constraints are lm-eval's checkers (pip install -e '.[dev]')"
)

from hir.tasks.constraints import (  # noqa: E402
    REQUEST_KINDS,
    TOPICS,
    Constraint,
    achieved_constraints,
    describe,
    draw_constraints,
    generated_request,
    hindsight_constraints,
    instruction_text,
    satisfies,
)
from hir.tasks.ifeval import load_prompts  # noqa: E402

REQUEST = "Write a poem about the sea."
LOWERCASE = Constraint("change_case:english_lowercase")
THREE_PARAGRAPHS = Constraint("length_constraints:number_paragraphs", {"num_paragraphs": 3})
ENDS_ASKING = Constraint("startend:end_checker", {"end_phrase": "Any questions?"})
# The issue's example: asked for all lowercase, 3 paragraphs and an ending; wrote 4 lowercase
# paragraphs that end otherwise.
FOUR_LOWERCASE_PARAGRAPHS = ("the sea is grey today\n***\nthe gulls are loud\n***\n"
                             "the boats come home\n***\nand night comes down")  # fmt: skip


@pytest.mark.skipif(not SHARED_IFEVAL.is_dir(), reason="needs ../shared/ifeval")
def test_no_generated_request_is_an_ifeval_test_prompt():
    prompts = [p["prompt"].lower() for p in load_prompts(SHARED_IFEVAL / "input_data.jsonl")]
    requests = [kind.format(topic=topic) for kind in REQUEST_KINDS for topic in TOPICS]
    assert len(requests) == len(REQUEST_KINDS) * len(TOPICS)
    found = [r for r in requests if any(r.lower().rstrip(".") in p for p in prompts)]
    assert not found, found[:5]


def test_drawn_constraints_are_distinct_without_conflicts_and_reproducible():
    from lm_eval.tasks.ifeval.instructions_registry import INSTRUCTION_CONFLICTS

    for seed in range(20):
        rng = random.Random(seed)
        request = generated_request(rng)
        drawn = draw_constraints(rng, request, count=3)
        kinds = [c.instruction_id for c in drawn]
        assert len(drawn) == 3 and len(set(kinds)) == 3
        for a in kinds:
            assert not any(b in INSTRUCTION_CONFLICTS[a] for b in kinds if b != a), kinds
        again = random.Random(seed)
        assert draw_constraints(again, generated_request(again), count=3) == drawn
        text = instruction_text(request, drawn)
        assert text.startswith(request) and all(describe(c, request) in text for c in drawn)


def test_drawing_leaves_the_callers_random_alone():
    random.seed(7)
    expected = random.random()
    random.seed(7)
    draw_constraints(random.Random(1), REQUEST, count=2)
    assert random.random() == expected


def test_the_issues_example_keeps_lowercase_and_describes_four_paragraphs():
    achieved = achieved_constraints(FOUR_LOWERCASE_PARAGRAPHS, REQUEST)
    assert Constraint("length_constraints:number_paragraphs", {"num_paragraphs": 4}) in achieved
    assert LOWERCASE in achieved and Constraint("punctuation:no_comma") in achieved
    assert Constraint("change_case:english_capital") not in achieved
    own = [LOWERCASE, THREE_PARAGRAPHS, ENDS_ASKING]
    relabeled = hindsight_constraints(FOUR_LOWERCASE_PARAGRAPHS, REQUEST, own, random.Random(0))
    assert relabeled[0] == LOWERCASE  # the one of its own it met, first
    assert THREE_PARAGRAPHS not in relabeled and ENDS_ASKING not in relabeled
    assert len(relabeled) == 3
    assert all(satisfies(FOUR_LOWERCASE_PARAGRAPHS, c, REQUEST) for c in relabeled)


def test_an_output_that_meets_its_constraints_keeps_them():
    output = (
        "the sea is grey today\n***\nthe gulls are loud\n***\nthe boats come home. Any questions?"
    )
    own = [THREE_PARAGRAPHS, ENDS_ASKING]
    assert hindsight_constraints(output, REQUEST, own, random.Random(0)) == own


def test_hand_read_descriptions_of_what_an_output_achieved():
    output = "Dear team, the launch moved to Friday. Please plan for it. P.S. Bring snacks."
    achieved = {c.instruction_id: c.kwargs for c in achieved_constraints(output, REQUEST)}
    assert achieved["length_constraints:number_words"] in ({"num_words": 10, "relation": "at least"},
                                                           {"num_words": 20, "relation": "less than"})  # fmt: skip
    assert achieved["detectable_content:postscript"] == {"postscript_marker": "P.S."}
    assert achieved["startend:end_checker"] == {"end_phrase": "P.S. Bring snacks."}
    assert "punctuation:no_comma" not in achieved  # it has one
    assert "change_case:english_lowercase" not in achieved


def test_every_hindsight_constraint_is_satisfied_by_its_output():
    pieces = ["The tide turns.", "*a highlighted line*", "* first point", "* second point",
              "[name] will call.", "<<A Title>>", "WE SAIL AT DAWN", "no commas here", "***"]  # fmt: skip
    rng = random.Random(3)
    for _ in range(25):
        output = "\n".join(rng.sample(pieces, rng.randint(1, 5)))
        own = draw_constraints(rng, REQUEST, count=rng.randint(1, 3))
        relabeled = hindsight_constraints(output, REQUEST, own, rng)
        assert relabeled and all(satisfies(output, c, REQUEST) for c in relabeled), (
            output,
            relabeled,
        )
