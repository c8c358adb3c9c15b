import pytest

from hir import HIRError
from hir.online.buffer import ReplayBuffer, parse_retention, retain
from hir.online.sampling import Sample, sample_outputs
from hir.tasks import load_task


def _samples(iteration, n):
    return [Sample(iteration, f"q{i}", "Do it.", f"out{i}", float(i % 2)) for i in range(n)]


def test_retention_policies():
    samples = _samples(1, 3) + _samples(2, 3) + _samples(3, 3)
    assert retain(samples, "all", 0, train_size=3) == samples
    assert {s.iteration for s in retain(samples, "latest", 2, train_size=3)} == {2, 3}
    assert retain(samples, "cap", 2, train_size=3) == samples[-6:]
    for bad in ("some", "latest:0", "cap:x", "all:3"):
        with pytest.raises(HIRError, match="buffer retention"):
            parse_retention(bad)


def test_buffer_persists_every_record_and_reloads(tmp_path):
    buffer = ReplayBuffer(tmp_path / "buffer.jsonl", "latest:1", train_size=5)
    buffer.add(_samples(1, 4))
    buffer.add(_samples(2, 2))
    assert len(buffer) == 2
    again = ReplayBuffer(tmp_path / "buffer.jsonl")
    again.load()
    assert again.samples == buffer.samples
    assert set(again.samples[0].to_dict()) == {
        "iteration",
        "query_id",
        "instruction",
        "output",
        "score",
    }
    # Token ids as sampled survive the round trip.
    sampled = ReplayBuffer(tmp_path / "sampled.jsonl")
    sampled.add([Sample(1, "q0", "Do it.", "out", 1.0, (5, 6, 0))])
    sampled.save()
    sampled.load()
    assert sampled.samples[0].token_ids == (5, 6, 0)
    (tmp_path / "sampled.jsonl").unlink()
    # Atomic writes leave no temporary files behind.
    assert [p.name for p in tmp_path.iterdir()] == ["buffer.jsonl"]


class FixedPolicy:
    """Samples "1", "2", "1", "1" (the three "1"s from different token ids)."""

    chat = False  # plain prompts

    def generate(self, prompts, num_samples, **kwargs):
        assert kwargs["do_sample"] and kwargs["return_token_ids"] and num_samples == 4
        return [[("1", (11, 0)), ("2", (12, 0)), ("1", (1, 1, 0)), ("1", (13,))] for _ in prompts]


def test_sampling_drops_duplicates_per_query_and_scores_each_output():
    task = load_task("synthetic/count", num_examples=20)
    examples = task.split("train")[:3]
    samples = sample_outputs(
        FixedPolicy(), task, examples, instruction="Go.", iteration=7, num_samples=4
    )
    assert [(s.query_id, s.output) for s in samples] == [
        (e.id, o) for e in examples for o in ("1", "2")
    ]
    assert all(s.iteration == 7 and s.instruction == "Go." for s in samples)
    # A duplicate keeps the token ids it was first sampled with.
    assert [s.token_ids for s in samples[:2]] == [(11, 0), (12, 0)]
    for s, example in zip(samples, [e for e in examples for _ in range(2)]):
        assert s.score == float(s.output == example.target)
