"""A graded feedback for synthetic/count (the SmolLM2 RLHF comparison, configs/smollm2-rlhf.yaml):
1 for the right count, 1 / (1 + distance) for a wrong number, 0 for no number. Accuracy still
counts exact answers only (success_threshold 1)."""

import re


def count_closeness(answer: str, example) -> float:
    expected = example.meta["items"].count(example.meta["word"])
    found = re.search(r"-?\d+", answer)
    if found is None:
        return 0.0
    return 1.0 / (1.0 + abs(int(found.group()) - expected))
