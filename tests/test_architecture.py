"""The shape of the trainers and the defects fixed with it: each test here failed before its fix."""

import json

import pytest
import torch

from hir import HIRError
from hir.cli import main
from hir.losses import ppo_policy_loss
from hir.tasks import load_task
from hir.trainers import METHODS, get_method
from hir.trainers.hir import HIRConfig, HIRTrainer
from hir.trainers.loop import TrainItem
from hir.trainers.ppo import PPOConfig, PPOTrainer
from hir.trainers.run_config import SamplingConfig

TASK = load_task("synthetic/sort", num_examples=40)
QUICK = dict(iterations=1, batch_size=16, max_new_tokens=4, report_to="none", seed=0)


def test_methods_are_siblings_with_their_own_configs():
    from hir.trainers.loop import OnlineTrainer

    for name in METHODS:
        trainer_class, config_class = get_method(name)
        assert trainer_class.__bases__[0].__name__ in (
            "OnlineTrainer",
            "SupervisedTrainer",
            "GroupTrainer",
            "ClippedTokenTrainer",
        )
        assert issubclass(trainer_class, OnlineTrainer) and trainer_class.method == name
        # What the loop reads of a method is declared, not probed from its config's type.
        assert trainer_class.samples == issubclass(config_class, SamplingConfig)
    ppo_fields = set(PPOConfig.__dataclass_fields__)
    assert "contrastive_weight" not in ppo_fields and "relabel" not in ppo_fields
    assert "kl_coef" not in HIRConfig.__dataclass_fields__
    assert "num_samples" not in get_method("sft")[1].__dataclass_fields__
    with pytest.raises(HIRError, match="takes a HIRConfig"):
        HIRTrainer("unused", TASK, PPOConfig())


def test_a_loaded_model_is_recorded_by_its_name(tiny_gpt2_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2_dir)
    config = HIRConfig(output_dir=str(tmp_path), **{**QUICK, "iterations": 0})
    summary = HIRTrainer(model, TASK, config, tokenizer=tokenizer).train()
    assert summary["model"] == tiny_gpt2_dir
    saved = json.loads((tmp_path / "config.json").read_text())["config"]
    assert saved["model"] == tiny_gpt2_dir and saved["task"] == TASK.name
    with pytest.raises(HIRError, match="needs its tokenizer"):
        HIRTrainer(model, TASK, HIRConfig(output_dir=str(tmp_path / "x"), **QUICK))


def test_in_batch_contrast_keeps_each_outputs_own_prefix(tiny_gpt2_dir, tmp_path, monkeypatch):
    """P[i, k] = log P(o_i | q_k, p_k): with sub-output the suffix o_i is read after prompt k and
    *its own* prefix, never output k's prefix."""
    config = HIRConfig(
        output_dir=str(tmp_path), contrastive_form="in_batch", sub_output_prob=1.0, **QUICK
    )
    trainer = HIRTrainer(tiny_gpt2_dir, TASK, config)
    a, b = trainer.train_examples[:2]
    target = trainer.target_instruction
    batch = [TrainItem(a, target, "apple kiwi pear"), TrainItem(b, target, "fig date plum")]
    seen = []
    real = trainer.policy.statistics_for

    def spy(prompts, outputs, model=None, contexts=None):
        seen.append(([p + c for p, c in zip(prompts, contexts)], outputs))
        return real(prompts, outputs, model, contexts)

    monkeypatch.setattr(trainer.policy, "statistics_for", spy)
    trainer.loss(batch)
    ((prompts, outputs),) = seen
    prompt_of = [trainer.task.prompt(e.query, target) for e in (a, b)]
    for row, (prompt, output) in enumerate(zip(prompts, outputs)):
        i, k = divmod(row, 2)
        assert prompt.startswith(prompt_of[k])
        own_words = batch[i].output.split(" ")
        context = prompt[len(prompt_of[k]) :].strip().split(" ")
        assert own_words[: len(context)] == context and own_words[len(context) :] == output.split(
            " "
        )


def test_warmup_needs_a_scheduler_that_uses_it():
    with pytest.raises(HIRError, match="warmup_steps needs --lr_scheduler constant_with_warmup"):
        HIRConfig(warmup_steps=10)


def test_ppo_steps_its_scheduler_once_per_accumulated_step(tiny_gpt2_dir, tmp_path):
    settings = {**QUICK, "batch_size": 8, "num_samples": 2}
    config = PPOConfig(output_dir=str(tmp_path), lr_scheduler="constant_with_warmup", warmup_steps=1000,
                       gradient_accumulation_steps=2, ppo_epochs=1, learning_rate=1e-3, **settings)  # fmt: skip
    trainer = PPOTrainer(tiny_gpt2_dir, TASK, config)
    trainer.train()
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[1])
    optimizer_steps = record["train_steps"] // 2  # micro-batches / accumulation
    assert optimizer_steps >= 1
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(1e-3 * optimizer_steps / 1000)


def test_the_compare_start_row_uses_the_runs_evaluation_settings(
    tiny_gpt2_dir, tmp_path, monkeypatch
):
    from hir.compare.methods import compare_configs
    from hir.compare.run import Start, run_comparison
    from hir.online import evaluate as evaluation

    calls = []
    real = evaluation.evaluate
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: calls.append(k) or real(*a, **k))
    settings = {**QUICK, "eval_limit": 3, "eval_batch_size": 2, "correct_instruction": "Be right."}
    run_comparison(compare_configs(["start"], settings), [0], lambda seed: Start(TASK, tiny_gpt2_dir),
                   tmp_path)  # fmt: skip
    (call,) = calls
    assert (call["limit"], call["batch_size"], call["instruction"]) == (3, 2, "Be right.")


def graded(output, example):
    return min(len(output) / 8, 1.0)


def test_one_success_rule_for_accuracy_sample_accuracy_and_farl(tiny_gpt2_dir, tmp_path):
    task = load_task("synthetic/sort", num_examples=40, feedback=graded)
    config = HIRConfig(output_dir=str(tmp_path), success_threshold=0.5, num_samples=2, **QUICK)
    HIRTrainer(tiny_gpt2_dir, task, config).train()
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[1])
    samples = [json.loads(line) for line in (tmp_path / "buffer.jsonl").read_text().splitlines()]
    assert record["sample_accuracy"] == pytest.approx(
        sum(s["score"] >= 0.5 for s in samples) / len(samples)
    )
    assert record["sample_accuracy"] > 0 and record["mean_score"] > 0


def test_ppo_ratio_is_finite_far_off_policy():
    logp = torch.tensor([[0.0, -200.0]])
    old = torch.tensor([[-200.0, 0.0]])
    loss, _ = ppo_policy_loss(logp, old, torch.tensor([[-1.0, 1.0]]), torch.ones(1, 2))
    assert torch.isfinite(loss)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--bogus", "1"], "unknown option(s)"),
        (["train", "--method=nonsense"], "unknown method 'nonsense'"),
        (["train", "--method"], "--method needs a value"),
        (["train", "--iterations", "many"], "invalid int value"),
        (["train", "--method=ppo", "--kl_coef", "-1"], "kl_coef must be >= 0"),
        (["train", "--method", "ppo", "--ptx_coef", "27.8", "--model", "M"], "ptx_coef > 0 needs pretraining pairs"),
        (["train", "--top_p", "1.5"], "top_p must be in (0, 1]"),
        (["train", "--learning_rate", "-1"], "learning_rate must be > 0"),
        (["compare", "--seeds", "a,b", "--model", "m"], "--seeds must be comma-separated integers"),
        (["eval", "--model", "m", "--limit", "0"], "--limit must be >= 1"),
        (["frobnicate"], "unknown command"),
    ],
)  # fmt: skip
def test_bad_options_end_in_one_line(argv, message, capsys, tmp_path, tiny_gpt2_dir):
    argv = [tiny_gpt2_dir if a == "M" else a for a in argv] + (
        ["--output_dir", str(tmp_path)] if argv[0] == "train" else []
    )
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_yaml_that_is_not_a_mapping_or_has_a_float_count_is_refused(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("- iterations\n- 2\n")
    assert main(["train", "--config", str(path)]) == 2
    assert "must be a YAML mapping" in capsys.readouterr().err
    path.write_text("iterations: 1.5\n")
    assert main(["train", "--config", str(path)]) == 2
    assert "iterations must be int, got float 1.5" in capsys.readouterr().err


def test_every_command_takes_both_spellings_and_every_task_option(tmp_path, capsys):
    out = tmp_path / "a.jsonl"
    for spelling in ("--split_seed", "--split-seed"):
        assert main(["tasks", "export", "synthetic/count", "--num-examples", "30", spelling, "5",
                     "--split", "test", "--output", str(out)]) == 0  # fmt: skip
    ids_seed_5 = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert main(["tasks", "export", "synthetic/count", "--num_examples", "30", "--split", "test",
                 "--output", str(out)]) == 0  # fmt: skip
    assert ids_seed_5 != [json.loads(line)["id"] for line in out.read_text().splitlines()]


def test_the_papers_config_file_parses_for_hir():
    from pathlib import Path

    from hir.arguments import ModelArguments, TaskArguments
    from hir.options import OptionParser

    path = Path(__file__).resolve().parents[1] / "configs" / "paper.yaml"
    model, task, config = OptionParser(
        [ModelArguments, TaskArguments, HIRConfig], "hir train"
    ).parse(["--config", str(path)])
    assert model.model == "google/flan-t5-base" and task.task.startswith("bigbench/")
    assert (config.epochs_per_iteration, config.label_smoothing, config.contrastive_weight) == (
        10,
        0.2,
        1.0,
    )
