"""NFT and NSR on the loop (hir.trainers.nft, hir.trainers.nsr): each raises the share of right
samples on an easy binary task, and each refuses a reward (model), whose scores have no
correct/wrong split."""

import json

import pytest

from hir.errors import HIRError
from hir.tasks import load_task
from hir.trainers.nft import NFTConfig, NFTTrainer
from hir.trainers.nsr import NSRConfig, NSRTrainer


def has_an_a(output, example):
    """An easy binary feedback: right when the output holds the letter 'a'."""
    return float("a" in output)


TASK = load_task("synthetic/sort", num_examples=80, feedback=has_an_a)


def _settings(output_dir, **overrides):
    return {**dict(output_dir=str(output_dir), iterations=5, batch_size=32, max_new_tokens=4,
                   num_samples=4, learning_rate=3e-3, report_to="none", seed=0, eval_limit=8),
            **overrides}  # fmt: skip


def _rewards(folder) -> list[float]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["reward"] for line in lines[1:]]


@pytest.mark.parametrize("trainer, config", [(NFTTrainer, NFTConfig), (NSRTrainer, NSRConfig)])
def test_the_method_raises_the_share_of_right_samples(tiny_gpt2_dir, tmp_path, trainer, config):
    trainer(tiny_gpt2_dir, TASK, config(**_settings(tmp_path))).train()
    rewards = _rewards(tmp_path)
    assert rewards[-1] > rewards[0] + 0.1, rewards


@pytest.mark.parametrize("trainer, config", [(NFTTrainer, NFTConfig), (NSRTrainer, NSRConfig)])
def test_a_reward_has_no_right_and_wrong(tiny_gpt2_dir, tmp_path, trainer, config):
    def length_reward(prompts, completions, **kwargs):
        return [float(len(c)) for c in completions]

    with pytest.raises(HIRError, match="needs the task's correct/wrong feedback"):
        trainer(tiny_gpt2_dir, TASK, config(**_settings(tmp_path)), reward=length_reward)
    assert not any(tmp_path.iterdir())


def test_bad_settings_are_one_line():
    with pytest.raises(HIRError, match="clamp_negative must be > 0"):
        NFTConfig(clamp_negative=0.0)
    with pytest.raises(HIRError, match="positive_weight must be >= 0"):
        NSRConfig(positive_weight=-0.1)
    with pytest.raises(HIRError, match="epsilon must be in"):
        NSRConfig(epsilon=1.5)


def test_compare_runs_the_group_methods_at_one_budget_with_paired_verdicts(tiny_gpt2_dir, tmp_path):
    from hir.cli import main

    out = tmp_path / "compare"
    argv = ["compare", "--model", tiny_gpt2_dir, "--task", "synthetic/sort", "--num_examples", "40",
            "--methods", "start,grpo,rloo,nft,nsr", "--num_samples", "2", "--seeds", "0,1",
            "--iterations", "1", "--max_new_tokens", "4", "--batch_size", "16", "--eval_limit", "8",
            "--report_to", "none", "--output_dir", str(out)]  # fmt: skip
    assert main(argv) == 0
    comparison = json.loads((out / "comparison.json").read_text())
    assert [row["method"] for row in comparison["table"]] == ["start", "grpo", "rloo", "nft", "nsr"]
    for method in ("grpo", "rloo", "nft", "nsr"):
        config = json.loads((out / method / "seed-0" / "config.json").read_text())["config"]
        assert config["num_samples"] == 2  # one budget for all
    paired = (out / "paired.md").read_text()
    assert "| grpo | nft |" in paired and "| rloo | nsr |" in paired
