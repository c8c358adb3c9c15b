"""Golden numbers: with a fixed seed, one iteration of each algorithm (two for PPO, whose KL is 0
in the first by construction) on the tiny models gives the stored loss terms, so that an accidental change of the maths (or of what is sampled, relabeled
or batched) is caught. Regenerate after an *intended* change with

    python tests/test_golden.py

and say in the commit why the numbers moved."""

import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import pytest

from hir.tasks import load_task
from hir.trainers import METHODS, get_method

KEYS = ("loss", "loss_sft", "loss_contrastive", "entropy", "loss_policy", "loss_value", "kl",
        "reward", "sample_mean_score", "train_items")  # fmt: skip

GOLDEN = {
    "gpt2-hir": {
        "loss": 6.25809633731842,
        "loss_sft": 5.570818722248077,
        "loss_contrastive": 0.6931610330939293,
        "entropy": 5.883542895317078,
        "sample_mean_score": 0.265625,
        "train_items": 64,
    },
    "gpt2-farl": {
        "loss": 5.758362770080566,
        "loss_sft": 5.758362770080566,
        "sample_mean_score": 0.265625,
        "train_items": 17,
    },
    "gpt2-sft": {"loss": 5.769550442695618, "loss_sft": 5.769550442695618, "train_items": 32},
    "gpt2-ppo": {
        "loss": -0.10342611972009763,
        "loss_policy": -0.11318848690303462,
        "loss_value": 0.09762367233633995,
        "kl": 0.021176376147195697,
        "reward": 0.328125,
        "sample_mean_score": 0.328125,
    },
    "t5-hir": {
        "loss": 6.208048343658447,
        "loss_sft": 5.5200724601745605,
        "loss_contrastive": 0.6931505873799324,
        "entropy": 5.174592614173889,
        "sample_mean_score": 0.234375,
        "train_items": 64,
    },
    "t5-farl": {
        "loss": 6.365842342376709,
        "loss_sft": 6.365842342376709,
        "sample_mean_score": 0.234375,
        "train_items": 15,
    },
    "t5-sft": {"loss": 6.11111581325531, "loss_sft": 6.11111581325531, "train_items": 32},
    "t5-ppo": {
        "loss": -0.08958181599155068,
        "loss_policy": -0.0985692012782825,
        "loss_value": 0.08987385057844222,
        "kl": 0.11615161970257759,
        "reward": 0.328125,
        "sample_mean_score": 0.328125,
    },
    "gpt2-grpo": {
        "loss": -0.0037842958699911833,
        "reward": 0.265625,
        "sample_mean_score": 0.265625,
    },
    "gpt2-rloo": {
        "loss": -0.004691225476562977,
        "kl": 0.0,
        "reward": 0.265625,
        "sample_mean_score": 0.265625,
    },
    "t5-grpo": {
        "loss": 0.0168539130827412,
        "reward": 0.234375,
        "sample_mean_score": 0.234375,
    },
    "t5-rloo": {
        "loss": 0.1016446789726615,
        "kl": 0.0,
        "reward": 0.234375,
        "sample_mean_score": 0.234375,
    },
    "gpt2-nft": {
        "loss": -0.009377929178299382,
        "reward": 0.265625,
        "sample_mean_score": 0.265625,
    },
    "gpt2-nsr": {
        "loss": 0.7319523096084595,
        "reward": 0.265625,
        "sample_mean_score": 0.265625,
    },
    "t5-nft": {
        "loss": -0.011447464697991627,
        "reward": 0.234375,
        "sample_mean_score": 0.234375,
    },
    "t5-nsr": {
        "loss": 0.792497530579567,
        "reward": 0.234375,
        "sample_mean_score": 0.234375,
    },
}  # python tests/test_golden.py, torch 2.13.0 CPU


def contains_e(output, example):
    """A feedback that an untrained model satisfies about half the time."""
    return float("e" in output)


def one_iteration(model_dir: str, method: str) -> dict:
    """The last iteration's loss terms: PPO runs two iterations, so that its policy has moved
    away from the reference and the KL is not 0 by construction."""
    trainer_class, config_class = get_method(method)
    task = load_task("synthetic/sort", num_examples=40, feedback=contains_e)
    settings = dict(iterations=2 if method == "ppo" else 1, batch_size=8, max_new_tokens=4,
                    report_to="none", seed=0)  # fmt: skip
    known = {f.name for f in dataclasses.fields(config_class)}
    settings.update(
        {k: v for k, v in (("epochs_per_iteration", 1), ("num_samples", 2)) if k in known}
    )
    with tempfile.TemporaryDirectory() as output_dir:
        trainer_class(model_dir, task, config_class(output_dir=output_dir, **settings)).train()
        record = json.loads((Path(output_dir) / "metrics.jsonl").read_text().splitlines()[-1])
    return {key: record[key] for key in KEYS if key in record}


@pytest.mark.parametrize("arch", ["gpt2", "t5"])
@pytest.mark.parametrize("method", list(METHODS))
def test_one_iteration_reproduces_the_stored_numbers(request, arch, method):
    expected = GOLDEN[f"{arch}-{method}"]
    measured = one_iteration(request.getfixturevalue(f"tiny_{arch}_dir"), method)
    assert set(measured) == set(expected)
    for key, value in expected.items():
        assert measured[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import _build

    class Factory:
        def mktemp(self, name):
            return Path(tempfile.mkdtemp(prefix=name))

    numbers = {f"{arch}-{method}": one_iteration(_build(Factory(), arch), method)
               for arch in ("gpt2", "t5") for method in METHODS}  # fmt: skip
    print(json.dumps(numbers, indent=4))
