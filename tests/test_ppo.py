import json

import pytest
import torch
from helpers import killed_in_update

from hir import HIRError
from hir.models import load_policy
from hir.models.adapters import TrainingScope
from hir.online.sampling import Sample
from hir.tasks import load_task
from hir.trainers.ppo import VALUE_STATE, PPOConfig, PPOTrainer


def share_of_a(output, example):
    """A trivially easy graded reward: the share of the letter 'a' in the output."""
    return output.count("a") / max(len(output), 1)


def _config(model_dir, output_dir, **overrides):
    settings = dict(output_dir=str(output_dir), iterations=5, batch_size=32, max_new_tokens=4,
                    num_samples=4, learning_rate=3e-3, kl_coef=0.0, ppo_epochs=2, report_to="none",
                    seed=0, eval_limit=8)  # fmt: skip
    return PPOConfig(**{**settings, **overrides})


def test_ppo_raises_the_reward_on_an_easy_task(tiny_gpt2_dir, tmp_path):
    task = load_task("synthetic/sort", num_examples=80, feedback=share_of_a)
    trainer = PPOTrainer(tiny_gpt2_dir, task, _config(tiny_gpt2_dir, tmp_path))
    trainer.train()
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][
        1:
    ]
    rewards = [m["reward"] for m in metrics]
    assert rewards[-1] > rewards[0] + 0.1, rewards
    for key in ("kl", "clip_fraction", "loss_value", "loss_policy", "sample_accuracy"):
        assert key in metrics[-1], key


def test_ppo_works_for_t5_and_its_reference_stays_the_start_after_resume(tiny_t5_dir, tmp_path):
    task = load_task("synthetic/sort", num_examples=40, feedback=share_of_a)
    PPOTrainer(
        tiny_t5_dir, task, _config(tiny_t5_dir, tmp_path, iterations=1, kl_coef=0.05)
    ).train()
    resumed = PPOTrainer(
        tiny_t5_dir, task, _config(tiny_t5_dir, tmp_path, iterations=2, kl_coef=0.05, resume=True)
    )
    assert resumed.train()["iterations"] == 2
    start = load_policy(tiny_t5_dir)
    for a, b in zip(resumed.reference.model.parameters(), start.model.parameters()):
        assert torch.equal(a, b)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(resumed.policy.model.parameters(), start.model.parameters())
    )


def _history(output_dir):
    lines = (output_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if "seconds" not in k} for line in lines]


@pytest.mark.parametrize("scope", [TrainingScope(), TrainingScope(lora_r=4, train_last_layers=1)])
def test_a_killed_ppo_run_resumes_to_the_unbroken_runs_numbers(
    tiny_gpt2_dir, tmp_path, monkeypatch, scope
):
    """Fails if the value head is built after the RNG state is restored, or if the reference
    is read from anything but the model the run started from. With LoRA, the checkpoints keep
    only the value model's trained weights (its adapter and head), and that is enough. With
    the top layer trained, the value model reads the policy's kept frozen-layer activations."""
    task = load_task("synthetic/sort", num_examples=40, feedback=share_of_a)
    settings = dict(iterations=3, kl_coef=0.05, num_samples=2)
    lora_r = scope.lora_r

    def start():
        return load_policy(tiny_gpt2_dir).set_training_scope(scope)

    whole = PPOTrainer(start(), task, _config(tiny_gpt2_dir, tmp_path / "whole", **settings))
    whole.train()
    if scope.train_last_layers:
        value_model = whole.accelerator.unwrap_model(whole.value_model)
        assert value_model.frozen_twin.enabled and value_model.frozen_twin.source.hits > 0
    saved = torch.load(tmp_path / "whole" / "checkpoints" / "iteration-0003" / VALUE_STATE)
    value_model = whole.accelerator.unwrap_model(whole.value_model)
    trained = {n for n, p in value_model.named_parameters() if p.requires_grad}
    if lora_r:
        assert set(saved["value_model"]) == trained
        assert all(".lora_" in n or n.startswith("head.") for n in trained)
        assert (
            any(n.startswith("body.") for n in trained) and {"head.weight", "head.bias"} <= trained
        )
    else:  # every weight trained: all of them kept
        assert trained <= set(saved["value_model"]) and len(trained) > 10

    broken = _config(tiny_gpt2_dir, tmp_path / "broken", **settings)
    with killed_in_update(monkeypatch, PPOTrainer), pytest.raises(KeyboardInterrupt):
        PPOTrainer(start(), task, broken).train()
    resumed = _config(tiny_gpt2_dir, tmp_path / "broken", resume=True, **settings)
    PPOTrainer(start(), task, resumed).train()

    assert (tmp_path / "broken" / "buffer.jsonl").read_text() == (
        tmp_path / "whole" / "buffer.jsonl"
    ).read_text()
    whole, again = _history(tmp_path / "whole"), _history(tmp_path / "broken")
    assert [r["iteration"] for r in again] == [0, 1, 2, 3]
    for a, b in zip(whole, again):
        for key in ("accuracy", "reward", "kl", "loss_value", "loss_policy"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key
    assert whole[-1]["kl"] != 0.0


def test_ppo_switches_dropout_off_so_the_first_ratio_is_one(tmp_path):
    """A model that ships with dropout 0.1: in train mode two passes must agree, else the
    first PPO step's ratio p / p_old is not 1 and clip_fraction measures dropout."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from hir.models.small_models import task_corpus, train_tokenizer

    task = load_task("synthetic/sort", num_examples=40)
    tokenizer = train_tokenizer(task_corpus(task), vocab_size=300)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=256,
                        resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    trainer = PPOTrainer(model, task, _config(None, tmp_path, iterations=1, ppo_epochs=1, batch_size=64),
                         tokenizer=tokenizer)  # fmt: skip
    batch = trainer.policy.encode([task.prompt(e.query) for e in task.examples[:4]], ["a b"] * 4)
    trainer.model.train()
    first, _ = trainer._logprobs(trainer.policy, batch, trainer.model)
    second, _ = trainer._logprobs(trainer.policy, batch, trainer.model)
    assert torch.equal(first, second)
    trainer.train()
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[1])
    # One PPO epoch over one batch: the only step runs at ratio 1, so nothing is clipped.
    assert record["clip_fraction"] == 0.0


def test_ptx_coef_without_ptx_data_is_refused_and_ptx_data_is_read(tiny_gpt2_dir, tmp_path):
    task = load_task("synthetic/sort", num_examples=40)
    with pytest.raises(HIRError, match="ptx_coef > 0 needs pretraining pairs"):
        PPOTrainer(tiny_gpt2_dir, task, _config(tiny_gpt2_dir, tmp_path, ptx_coef=27.8))
    data = tmp_path / "ptx.jsonl"
    data.write_text(json.dumps({"prompt": "Q: a\nA:", "output": "a"}) + "\n")
    trainer = PPOTrainer(tiny_gpt2_dir, task, _config(tiny_gpt2_dir, tmp_path / "run", ptx_coef=1.0,
                                                      ptx_data=str(data), iterations=1))  # fmt: skip
    assert trainer.ptx_pairs == [("Q: a\nA:", "a")]
    trainer.train()
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[1])
    assert record["loss_ptx"] > 0


def test_ppo_scores_the_tokens_as_sampled_not_a_re_encoding(tiny_gpt2_dir, tmp_path, monkeypatch):
    task = load_task("synthetic/sort", num_examples=80)
    trainer = PPOTrainer(tiny_gpt2_dir, task, _config(tiny_gpt2_dir, tmp_path))
    example = trainer.train_examples[0]
    tokenizer = trainer.policy.tokenizer
    canonical = trainer.policy.format.output_ids([example.target])[0]
    # The same text spelled one byte-level token per character: a segmentation the tokenizer
    # would never produce, but a policy can sample.
    spelled = tuple(
        tokenizer.convert_tokens_to_ids(list(tokenizer.convert_ids_to_tokens(canonical[0])))
    ) + tuple(canonical[1:])
    assert list(spelled) != canonical
    assert tokenizer.decode(spelled, skip_special_tokens=True) == tokenizer.decode(
        canonical, skip_special_tokens=True
    )
    target = trainer.target_instruction
    trainer.buffer.add([Sample(1, example.id, target, example.target, 1.0, spelled)])
    monkeypatch.setattr(trainer, "_ppo_step", lambda item: {})
    (item,) = trainer.training_items(1)
    batch = trainer._score_rollout([item])["batch"]
    assert [t for t in batch.labels[0].tolist() if t != -100] == list(spelled)
