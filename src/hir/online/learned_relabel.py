"""A learned relabeler (phi learned, not scripted): where the feedback is costly, only a share of
the samples is scored (`feedback_budget`); a classifier trained on the scored ones, with the
scripted relabeler's instructions as labels, relabels the rest.

The classifier reads the output alone: hashed character 1-3-gram counts (unnormalised, so the
output's length is in them) and the length itself, into a multinomial logistic regression
(full-batch L-BFGS, L2). It learns feedback that shows in the output's form (length, format,
words, style); it cannot learn correctness that depends on the query (is 7 the right count?).
Its agreement with the scripted relabeler on held-out scored samples says which case a task is.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

FEATURE_BUCKETS = 1024  # hashed n-gram buckets


def output_features(outputs: Sequence[str], buckets: int = FEATURE_BUCKETS) -> torch.Tensor:
    """[N, buckets + 1]: each output's character 1-3-gram counts hashed into `buckets`
    (crc32: the same in every process), and log(1 + its length)."""
    features = torch.zeros(len(outputs), buckets + 1)
    for row, output in enumerate(outputs):
        for n in (1, 2, 3):
            for start in range(len(output) - n + 1):
                features[row, zlib.crc32(output[start : start + n].encode()) % buckets] += 1
        features[row, buckets] = math.log1p(len(output))
    return features


@dataclass
class OutputClassifier:
    """Multinomial logistic regression on `output_features`, standardised."""

    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor

    @classmethod
    def fit(cls, outputs: Sequence[str], labels: Sequence[int], classes: int,
            l2: float = 1e-3, steps: int = 100) -> OutputClassifier:  # fmt: skip
        features = output_features(outputs)
        mean, scale = features.mean(0), features.std(0, unbiased=False).clamp_min(1e-6)
        x = (features - mean) / scale
        y = torch.tensor(list(labels))
        weight = torch.zeros(x.shape[1], classes, requires_grad=True)
        bias = torch.zeros(classes, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

        def loss():
            optimizer.zero_grad()
            value = torch.nn.functional.cross_entropy(x @ weight + bias, y)
            value = value + l2 * weight.pow(2).sum()
            value.backward()
            return value

        optimizer.step(loss)
        return cls(weight.detach(), bias.detach(), mean, scale)

    def predict(self, outputs: Sequence[str]) -> list[int]:
        x = (output_features(outputs) - self.mean) / self.scale
        return (x @ self.weight + self.bias).argmax(-1).tolist()


class LearnedRelabel:
    """The scripted relabeler `scripted` (binary or quantile) where a sample was scored; for an
    unscored sample (score None), the instruction the classifier predicts from its output.
    `fit(samples)` trains the classifier on the scored (output, score) pairs of the buffer and
    measures its agreement with `scripted` on a held-out fifth of them first."""

    def __init__(self, scripted, seed: int = 0) -> None:
        self.scripted = scripted
        self.seed = seed
        self.classifier: OutputClassifier | None = None
        self.only_label = 0  # what is predicted when the scored samples hold one label only
        self.agreement: float | None = None  # on held-out scored samples, at the last fit

    @property
    def target_instruction(self) -> str:
        return self.scripted.target_instruction

    @property
    def instructions(self) -> list[str]:
        return self.scripted.instructions

    def opposite(self, instruction: str) -> str:
        return self.scripted.opposite(instruction)

    def fit(self, outputs: Sequence[str], scores: Sequence[float | None]) -> None:
        scored = [(o, s) for o, s in zip(outputs, scores) if s is not None]
        self.scripted.fit([s for _, s in scored])
        labels = [self._label(o, s) for o, s in scored]
        if len(set(labels)) < 2:  # one label: nothing to learn, predict it
            self.classifier, self.agreement = None, None
            self.only_label = labels[0] if labels else 0
            return
        order = list(range(len(scored)))
        random.Random(self.seed).shuffle(order)
        held = order[: len(order) // 5]
        if held:
            train = order[len(order) // 5 :]
            probe = OutputClassifier.fit([scored[i][0] for i in train], [labels[i] for i in train],
                                         len(self.instructions))  # fmt: skip
            predicted = probe.predict([scored[i][0] for i in held])
            self.agreement = sum(p == labels[i] for p, i in zip(predicted, held)) / len(held)
        self.classifier = OutputClassifier.fit([o for o, _ in scored], labels, len(self.instructions))  # fmt: skip

    def _label(self, output: str, score: float) -> int:
        return self.instructions.index(self.scripted("", "", output, score))

    def __call__(self, instruction: str, query: str, output: str, score: float | None) -> str:
        if score is not None:
            return self.scripted(instruction, query, output, score)
        if self.classifier is None:
            return self.instructions[self.only_label]
        return self.instructions[self.classifier.predict([output])[0]]
