import json
from pathlib import Path

import pytest
import torch
from helpers import weighted_ce_by_hand

from hir import HIRError
from hir.cli import main
from hir.online.sampling import Sample
from hir.tasks import load_task
from hir.trainers import loop
from hir.trainers.hir import HIRConfig, HIRTrainer
from hir.trainers.loop import TrainItem

TASK = load_task("synthetic/sort", num_examples=60)


def _config(model_dir, output_dir, **overrides):
    settings = dict(
        output_dir=str(output_dir), iterations=2, epochs_per_iteration=1, batch_size=16,
        max_new_tokens=6, eval_batch_size=16, report_to="none", log_samples=1, seed=3,
    )  # fmt: skip
    settings.update(overrides)
    return HIRConfig(**settings)


def test_the_loop_runs_for_both_model_kinds(tiny_model_dir, tmp_path):
    config = _config(
        tiny_model_dir, tmp_path / "run", contrastive_form="pairwise", sub_output_prob=1.0
    )
    trainer = HIRTrainer(tiny_model_dir, TASK, config)
    before = [p.detach().clone() for p in trainer.policy.model.parameters()]
    summary = trainer.train()
    assert summary["iterations"] == 2 and len(summary["accuracy_per_iteration"]) == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.policy.model.parameters()))
    metrics = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["iteration"] for m in metrics] == [0, 1, 2]
    for key in (
        "accuracy",
        "sample_accuracy",
        "sample_well_formed",
        "buffer_size",
        "loss_sft",
        "loss_contrastive",
        "entropy",
        "samples_per_second",
    ):
        assert key in metrics[1], key
    assert metrics[1]["buffer_size"] == len(
        (tmp_path / "run" / "buffer.jsonl").read_text().splitlines()
    )
    assert (tmp_path / "run" / "accuracy.png").stat().st_size > 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config"]["seed"] == 3 and "torch" in saved["versions"]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "iteration-0001",
        "iteration-0002",
    ]


@pytest.mark.slow  # starts a process (bf16 autocast for the whole run)
@pytest.mark.parametrize("scope", [[], ["--train_last_layers", "1"]])
def test_bf16_mixed_precision_trains_through_the_fast_paths(scope, tiny_gpt2_dir, tmp_path):
    """bf16 autocast, as accelerate runs a GPU, here on the CPU: the fused output layer (and, with
    the last layer trained, the frozen-layer cache) trains under it, and the weights stay
    float32. In a process of its own: accelerate keeps one mixed-precision state per process."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    command = [sys.executable, "-m", "hir", "train", "--model", tiny_gpt2_dir,
               "--task", "synthetic/sort", "--num_examples", "24", "--iterations", "1",
               "--epochs_per_iteration", "1", "--max_new_tokens", "4", "--batch_size", "8",
               "--report_to", "none", "--device", "cpu", "--mixed_precision", "bf16",
               "--output_dir", str(tmp_path), *scope]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert torch.isfinite(torch.tensor(metrics[1]["loss"]))
    start = load_file(Path(tiny_gpt2_dir) / "model.safetensors")
    trained = load_file(tmp_path / "checkpoints" / "iteration-0001" / "model.safetensors")
    assert all(weight.dtype == torch.float32 for weight in trained.values())
    assert any(not torch.equal(trained[name], start[name]) for name in trained)


def test_in_batch_form_and_quantile_relabel_run(tiny_gpt2_dir, tmp_path):
    config = _config(
        tiny_gpt2_dir,
        tmp_path / "run",
        iterations=1,
        contrastive_form="in_batch",
        relabel="quantile",
    )
    summary = HIRTrainer(tiny_gpt2_dir, TASK, config).train()
    assert summary["iterations"] == 1


def test_loss_is_the_sum_of_its_terms(tiny_gpt2_dir, tmp_path):
    config = _config(
        tiny_gpt2_dir,
        tmp_path / "run",
        contrastive_weight=0.7,
        entropy_weight=0.3,
        sub_output_prob=0.0,
    )
    trainer = HIRTrainer(tiny_gpt2_dir, TASK, config)
    example = trainer.train_examples[0]
    batch = [TrainItem(example, trainer.relabeler.target_instruction, example.target),
             TrainItem(example, trainer.relabeler.opposite(trainer.relabeler.target_instruction), "kiwi")]  # fmt: skip
    loss, terms = trainer.loss(batch)
    expected = terms["loss_sft"] + 0.7 * terms["loss_contrastive"] - 0.3 * terms["entropy"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert terms["loss_contrastive"] > 0


def test_balanced_instructions_weigh_each_instructions_items_the_same(tiny_gpt2_dir, tmp_path):
    def trainer_for(folder, **options):
        config = _config(tiny_gpt2_dir, tmp_path / folder, label_smoothing=0.0,
                         sub_output_prob=0.0, **options)  # fmt: skip
        return HIRTrainer(tiny_gpt2_dir, TASK, config)

    trainer = trainer_for("balanced", balance_instructions=True)
    example = trainer.train_examples[0]
    samples = [Sample(1, example.id, "x", output, score) for output, score in
               (("apple", 0.0), ("kiwi", 0.0), ("pear", 0.0), (example.target, 1.0))]  # fmt: skip
    items = trainer.weighted(trainer.relabel(samples))
    # 3 wrong, 1 right: N / (G * N_label) = 4 / 6 and 4 / 2.
    assert [i.weight for i in items] == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0])
    assert [i.weight for i in trainer.relabel(samples)] == [1.0] * 4  # relabeling sets none
    plain = trainer_for("plain")
    assert [i.weight for i in plain.weighted(plain.relabel(samples))] == [1.0] * 4
    _, terms = trainer.loss(items)
    assert terms["loss_sft"] == pytest.approx(weighted_ce_by_hand(trainer, items), rel=1e-4)


def test_balanced_instructions_and_answers_multiply(tiny_gpt2_dir, tmp_path):
    config = _config(tiny_gpt2_dir, tmp_path / "run", balance_instructions=True,
                     balance_answers=True)  # fmt: skip
    trainer = HIRTrainer(tiny_gpt2_dir, TASK, config)
    example = trainer.train_examples[0]
    samples = [Sample(1, example.id, "x", output, score) for output, score in
               (("apple", 0.0), ("apple", 0.0), ("pear", 0.0), (example.target, 1.0))]  # fmt: skip
    # Instructions: wrong 4 / 6 each, right 4 / 2. Answers within "wrong": apple 3 / 4 each,
    # pear 3 / 2; the right one alone: 1.
    weights = [i.weight for i in trainer.weighted(trainer.relabel(samples))]
    assert weights == pytest.approx([1 / 2, 1 / 2, 1.0, 2.0])


def test_contrast_first_epochs_train_the_contrastive_term_alone(tiny_gpt2_dir, tmp_path):
    config = _config(tiny_gpt2_dir, tmp_path / "run", iterations=1, epochs_per_iteration=3,
                     contrast_first_epochs=2, contrastive_weight=0.5, batch_size=64)  # fmt: skip
    trainer = HIRTrainer(tiny_gpt2_dir, TASK, config)
    calls = []
    loss = trainer.loss

    def spy(batch, contrastive_only=False):
        value, terms = loss(batch, contrastive_only)
        calls.append((contrastive_only, value.item(), terms))
        return value, terms

    trainer.loss = spy
    trainer.train()
    # Two epochs of contrast-only steps, then one epoch of the whole loss.
    per_epoch = len(calls) // 3
    assert [only for only, _, _ in calls] == [True] * 2 * per_epoch + [False] * per_epoch
    for _, value, terms in calls[: 2 * per_epoch]:
        assert set(terms) == {"loss", "loss_contrastive"}
        assert value == pytest.approx(0.5 * terms["loss_contrastive"], rel=1e-6)
    _, value, terms = calls[-1]
    expected = terms["loss_sft"] + 0.5 * terms["loss_contrastive"] - 0.001 * terms["entropy"]
    assert value == pytest.approx(expected, rel=1e-5)
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[1])
    assert metrics["train_steps"] == 3 * per_epoch
    assert metrics["contrast_first/train_steps"] == 2 * per_epoch


def test_the_new_options_are_checked_and_default_to_the_paper():
    config = HIRConfig()
    assert (config.contrastive_score, config.balance_instructions,
            config.contrast_first_epochs) == ("mean", False, 0)  # fmt: skip
    for bad, message in (({"contrastive_score": "max"}, "mean or sum"),
                         ({"contrast_first_epochs": 3, "epochs_per_iteration": 2}, "contrast_first_epochs"),
                         ({"contrast_first_epochs": 1, "contrastive_weight": 0.0}, "contrastive_weight > 0")):  # fmt: skip
        with pytest.raises(HIRError, match=message):
            HIRConfig(**bad)


def test_sub_output_moves_a_prefix_into_the_context(tiny_gpt2_dir, tmp_path):
    trainer = HIRTrainer(tiny_gpt2_dir, TASK, _config(tiny_gpt2_dir, tmp_path, sub_output_prob=1.0))
    example = trainer.train_examples[0]
    for _ in range(10):
        context, rest = trainer._with_sub_output(TrainItem(example, "x", "apple kiwi pear"))
        assert context.startswith(" ") and rest
        assert (context.strip() + " " + rest) == "apple kiwi pear"
    assert trainer._with_sub_output(TrainItem(example, "x", "apple")) == ("", "apple")


def test_a_killed_run_resumes_to_the_same_buffer_and_accuracy(tiny_gpt2_dir, tmp_path, monkeypatch):
    whole = _config(tiny_gpt2_dir, tmp_path / "whole", iterations=3)
    reference = HIRTrainer(tiny_gpt2_dir, TASK, whole).train()
    reference_buffer = (tmp_path / "whole" / "buffer.jsonl").read_text()

    calls = {"n": 0}
    real_train_epochs = loop.train_epochs

    def dies_in_iteration_2(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed mid-iteration, after sampling
        return real_train_epochs(*args, **kwargs)

    broken = _config(tiny_gpt2_dir, tmp_path / "broken", iterations=3)
    monkeypatch.setattr(loop, "train_epochs", dies_in_iteration_2)
    with pytest.raises(KeyboardInterrupt):
        HIRTrainer(tiny_gpt2_dir, TASK, broken).train()
    monkeypatch.setattr(loop, "train_epochs", real_train_epochs)

    resumed_config = _config(tiny_gpt2_dir, tmp_path / "broken", iterations=3, resume=True)
    resumed = HIRTrainer(tiny_gpt2_dir, TASK, resumed_config).train()
    assert (tmp_path / "broken" / "buffer.jsonl").read_text() == reference_buffer
    assert resumed["accuracy_per_iteration"] == reference["accuracy_per_iteration"]
    assert resumed["final_accuracy"] == reference["final_accuracy"]


def test_config_from_yaml_with_flag_overrides(tmp_path):
    from hir.arguments import ModelArguments, TaskArguments
    from hir.options import OptionParser

    parser = OptionParser([ModelArguments, TaskArguments, HIRConfig], prog="hir train")
    path = tmp_path / "run.yaml"
    path.write_text("task: synthetic/sort\niterations: 7\nlearning_rate: 0.001\n")
    model, task, config = parser.parse(["--config", str(path), "--iterations", "2", "--model", "m"])
    assert (task.task, config.iterations, config.learning_rate, model.model) == (
        "synthetic/sort", 2, 0.001, "m",
    )  # fmt: skip
    path.write_text("iterationz: 7\n")
    with pytest.raises(HIRError, match="unknown field\\(s\\) iterationz"):
        OptionParser([HIRConfig], prog="hir train").parse(["--config", str(path)])
    with pytest.raises(HIRError, match="bad config: temperature must be > 0"):
        HIRConfig(temperature=0)


def test_hir_train_cli_errors_are_one_line(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--model",
                str(tmp_path / "missing"),
                "--task",
                "synthetic/sort",
                "--output_dir",
                str(tmp_path),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "does not exist" in err and err.count("\n") == 1


@pytest.mark.slow  # the whole demo, minutes of CPU
def test_demo_writes_summary_and_plot(tmp_path, capsys):
    from hir.recipes.demo import run_demo

    summary = run_demo(tmp_path / "demo", seed=0, iterations=1, report_to="none")
    saved = json.loads((tmp_path / "demo" / "summary.json").read_text())
    for key in ("initial_accuracy", "final_accuracy", "iterations", "wall_seconds"):
        assert saved[key] == summary[key]
    assert saved["iterations"] == 1
    assert (tmp_path / "demo" / "accuracy.png").is_file()
    assert "| run | before | after | gain |" in capsys.readouterr().out


def test_a_fresh_run_refuses_to_mix_with_another_runs_checkpoints(tiny_gpt2_dir, tmp_path):
    config = _config(tiny_gpt2_dir, tmp_path / "run", iterations=0)
    HIRTrainer(tiny_gpt2_dir, TASK, config).train()
    with pytest.raises(HIRError, match="already holds the checkpoints of a run: pass --resume"):
        HIRTrainer(tiny_gpt2_dir, TASK, config)
    again = _config(tiny_gpt2_dir, tmp_path / "run", iterations=0, overwrite_output_dir=True)
    assert HIRTrainer(tiny_gpt2_dir, TASK, again).train()["iterations"] == 0
