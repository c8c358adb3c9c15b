"""Golden numbers: with a fixed seed, one iteration of each algorithm on the tiny models gives
the stored loss terms, so that an accidental change of the maths (or of what is sampled, relabeled
or batched) is caught. Regenerate after an *intended* change with

    python tests/test_golden.py

and say in the commit why the numbers moved."""

import json
import sys
import tempfile
from pathlib import Path

import pytest

from hir.tasks import load_task
from hir.trainers.farl import FARLTrainer
from hir.trainers.hir_config import HIRConfig
from hir.trainers.hir_trainer import HIRTrainer
from hir.trainers.ppo import PPOConfig, PPOTrainer
from hir.trainers.sft import SFTTrainer

METHODS = {"hir": (HIRTrainer, HIRConfig), "farl": (FARLTrainer, HIRConfig),
           "sft": (SFTTrainer, HIRConfig), "ppo": (PPOTrainer, PPOConfig)}  # fmt: skip
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
        "loss": -0.10770147165749222,
        "loss_policy": -0.12023464438971132,
        "loss_value": 0.1253317289520055,
        "kl": 0.0,
        "reward": 0.390625,
        "sample_mean_score": 0.390625,
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
        "loss": -0.0744216731400229,
        "loss_policy": -0.0845657221507281,
        "loss_value": 0.10144048288930207,
        "kl": 0.0,
        "reward": 0.3125,
        "sample_mean_score": 0.3125,
    },
}  # python tests/test_golden.py, torch 2.13.0 CPU


def contains_e(output, example):
    """A feedback that an untrained model satisfies about half the time."""
    return float("e" in output)


def one_iteration(model_dir: str, method: str) -> dict:
    trainer_class, config_class = METHODS[method]
    task = load_task("synthetic/sort", num_examples=40, feedback=contains_e)
    with tempfile.TemporaryDirectory() as output_dir:
        config = config_class(model=model_dir, task="synthetic/sort", output_dir=output_dir, num_examples=40,
                              iterations=1, epochs_per_iteration=1, batch_size=8, max_new_tokens=4,
                              num_samples=2, report_to="none", seed=0)  # fmt: skip
        trainer_class(model_dir, task, config).train()
        record = json.loads((Path(output_dir) / "metrics.jsonl").read_text().splitlines()[1])
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
