import csv
import json
import os
import random
import shutil
import statistics

import pytest
from helpers import weighted_ce_by_hand

from hir import HIRError
from hir.cli import main
from hir.compare.methods import compare_configs, parse_methods
from hir.compare.run import Start, run_comparison
from hir.compare.status import comparison_status, hours_left
from hir.compare.table import markdown_table, summarize
from hir.online.sampling import Sample
from hir.recipes.export import checkpoint_of
from hir.runs.lock import LOCK_NAME
from hir.tasks import load_task
from hir.trainers.farl import FARLConfig, FARLTrainer
from hir.trainers.sft import SFTConfig, SFTTrainer

TASK = load_task("synthetic/sort", num_examples=60)
SETTINGS = dict(iterations=1, epochs_per_iteration=1, batch_size=16, max_new_tokens=6,
                report_to="none", seed=1)  # fmt: skip


def _config(model_dir, output_dir, config_class=FARLConfig, **overrides):
    return config_class(output_dir=str(output_dir), **{**SETTINGS, **overrides})


def test_farl_keeps_only_correct_samples_under_the_target_instruction(tiny_gpt2_dir, tmp_path):
    trainer = FARLTrainer(tiny_gpt2_dir, TASK, _config(tiny_gpt2_dir, tmp_path))
    example = trainer.train_examples[0]
    samples = [
        Sample(1, example.id, "x", example.target, 1.0),
        Sample(1, example.id, "x", "kiwi", 0.0),
    ]
    trainer.buffer.add(samples)
    items = trainer.training_items(1)
    assert [(i.output, i.instruction) for i in items] == [
        (example.target, trainer.target_instruction)
    ]
    loss, terms = trainer.loss(items)
    assert set(terms) == {"loss", "loss_sft"} and loss.item() > 0


def test_balance_answers_weighs_each_distinct_answer_the_same(tiny_gpt2_dir, tmp_path):
    config = _config(tiny_gpt2_dir, tmp_path, balance_answers=True, label_smoothing=0.0)
    trainer = FARLTrainer(tiny_gpt2_dir, TASK, config)
    first, second = trainer.train_examples[:2]
    # Three right samples, two of them one answer; the wrong one is not kept.
    samples = [Sample(1, e.id, "x", e.target, score, answer=e.target)
               for e, score in ((first, 1.0), (first, 1.0), (second, 1.0), (second, 0.0))]  # fmt: skip
    samples[3] = Sample(1, second.id, "x", "kiwi", 0.0, answer="kiwi")
    trainer.buffer.add(samples)
    trained = []
    trainer.train_epochs = lambda items, loss, epochs, iteration: (
        trained.extend(items) or {"train_steps": 1}
    )
    trainer.update(trainer.training_items(1), 1)
    # N / (A * N_answer) within the one instruction: 3 / (2 * 2) twice, 3 / (2 * 1) once.
    assert [i.weight for i in trained] == pytest.approx([0.75, 0.75, 1.5])
    _, terms = trainer.loss(trained)
    assert terms["loss_sft"] == pytest.approx(weighted_ce_by_hand(trainer, trained), rel=1e-4)
    # Off (the default), every item counts once.
    plain = FARLTrainer(tiny_gpt2_dir, TASK, _config(tiny_gpt2_dir, tmp_path / "plain"))
    assert [i.weight for i in plain.weighted(trained)] == [0.75, 0.75, 1.5]
    assert [i.weight for i in plain.weighted(trainer.training_items(1))] == [1.0] * 3


def test_sft_trains_on_ground_truth_without_sampling(tiny_gpt2_dir, tmp_path):
    summary = SFTTrainer(tiny_gpt2_dir, TASK, _config(tiny_gpt2_dir, tmp_path, SFTConfig)).train()
    metrics = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert summary["method"] == "sft"
    assert metrics[1]["train_items"] == len(TASK.split("train"))
    assert "sample_accuracy" not in metrics[1]


def test_sft_with_labels_per_iteration_draws_that_many_labels_each_iteration(
    tiny_gpt2_dir, tmp_path
):
    config = _config(tiny_gpt2_dir, tmp_path, SFTConfig, labels_per_iteration=5)
    trainer = SFTTrainer(tiny_gpt2_dir, TASK, config)
    by_hand = random.Random(config.seed)  # the trainer's generator, seeded alike
    for iteration in (1, 2):
        drawn = by_hand.sample(trainer.train_examples, 5)
        items = trainer.training_items(iteration)
        assert [(i.example.id, i.output) for i in items] == [(e.id, e.target) for e in drawn]
    with pytest.raises(HIRError, match="labels_per_iteration must be >= 1"):
        _config(tiny_gpt2_dir, tmp_path, SFTConfig, labels_per_iteration=0)


def test_compare_writes_one_row_per_method_with_mean_and_std(tiny_gpt2_dir, tmp_path):
    task = TASK
    result = run_comparison(
        compare_configs(["start", "hir", "farl", "sft"], SETTINGS),
        [0, 1],
        lambda seed: Start(task, tiny_gpt2_dir),
        tmp_path,
    )
    rows = {r["method"]: r for r in result["table"]}
    assert list(rows) == ["start", "hir", "farl", "sft"] and all(
        r["seeds"] == 2 for r in rows.values()
    )
    for name in (
        "comparison.md",
        "comparison.csv",
        "comparison.json",
        "accuracy_vs_iteration.png",
        "accuracy_vs_wall_time.png",
    ):
        assert (tmp_path / name).is_file(), name
    with open(tmp_path / "comparison.csv") as f:
        assert [r["method"] for r in csv.DictReader(f)] == ["start", "hir", "farl", "sft"]
    # The untouched start policy scores the same as each trained method's iteration 0.
    hir_runs = [r for r in result["runs"] if r["method"] == "hir"]
    start_runs = [r for r in result["runs"] if r["method"] == "start"]
    assert [r["history"][0]["accuracy"] for r in hir_runs] == [
        r["final_accuracy"] for r in start_runs
    ]
    # ...and gives its commonest answer to the same share of the queries.
    assert [r["history"][0]["commonest_answer_share"] for r in hir_runs] == [
        r["history"][0]["commonest_answer_share"] for r in start_runs
    ]
    assert all(r["peak_rss_mib"] > 0 for r in result["runs"])
    # The diagnostics: a row per trained method, HIR's contrastive loss and relabeled share.
    diagnostics = (tmp_path / "diagnostics.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in diagnostics[2:]] == ["| hir", "| farl", "| sft"]
    hir_cells = diagnostics[2].split(" | ")
    assert hir_cells[1] == "2" and "→" in hir_cells[5] and "→" in hir_cells[6]
    # The last column starts at the start's commonest-answer share (mean over the seeds).
    start_share = sum(r["history"][0]["commonest_answer_share"] for r in hir_runs) / 2
    assert hir_cells[-1].startswith(f"{start_share:.2f} → ")


def test_summary_statistics_by_hand():
    runs = [
        {"method": "hir", "final_accuracy": a, "final_mean_score": a / 2, "wall_seconds": 10.0, "peak_rss_mib": m}
        for a, m in [(0.5, 100), (0.7, 300)]
    ]  # fmt: skip
    (row,) = summarize(runs, ["hir"])
    assert row["accuracy_mean"] == pytest.approx(0.6)
    assert row["accuracy_std"] == pytest.approx(0.1414213, rel=1e-5)
    assert row["peak_rss_mib"] == 300
    assert row["mean_score_mean"] == pytest.approx(0.3)
    assert "| hir | 0.600 ± 0.141 | 0.300 ± 0.071 | 2 | 10 | 300 |" in markdown_table([row])


def test_a_resumed_runs_wall_time_is_its_own_clock_not_the_resuming_process():
    history = [{"iteration": 0, "wall_seconds": 25.0}, {"iteration": 1, "wall_seconds": 248.0}]
    resumed = {"method": "farl", "final_accuracy": 0.3, "wall_seconds": 142.0, "peak_rss_mib": 1,
               "history": history}  # fmt: skip
    start = {"method": "start", "final_accuracy": 0.3, "wall_seconds": 29.0, "peak_rss_mib": 1,
             "history": history[:1]}  # fmt: skip
    rows = {r["method"]: r for r in summarize([resumed, start], ["farl", "start"])}
    assert rows["farl"]["wall_seconds_mean"] == 248.0 and rows["start"]["wall_seconds_mean"] == 29.0


def test_ppo_has_no_ptx_term_whatever_the_shared_settings_say():
    # A YAML that sets ptx_coef for PPO-ptx (configs/smollm2-rlhf.yaml) must not give it to PPO.
    configs = compare_configs(["ppo", "ppo-ptx", "instructgpt-ppo", "instructgpt-ppo-ptx"],
                              {**SETTINGS, "ptx_coef": 27.8})  # fmt: skip
    assert [c.ptx_coef for c in configs.values()] == [0.0, 27.8, 0.0, 27.8]


def test_unknown_methods_are_refused():
    with pytest.raises(HIRError, match="unknown method"):
        parse_methods("hir,ppo-nonsense")


def test_a_method_takes_settings_of_its_own_after_a_plus():
    methods = parse_methods(
        "start,hir+contrastive_weight=10+balance_instructions=true,hir-balanced+contrastive_score=sum"
    )
    configs = compare_configs(methods, {"epochs_per_iteration": 2, "label_smoothing": 0.0})
    tuned = configs["hir+contrastive_weight=10+balance_instructions=true"]
    assert (tuned.contrastive_weight, tuned.balance_instructions) == (10.0, True)
    assert tuned.epochs_per_iteration == 2 and tuned.label_smoothing == 0.0  # shared settings kept
    named = configs["hir-balanced+contrastive_score=sum"]
    assert named.balance_instructions and named.contrastive_score == "sum"
    for bad, message in (("hir+contrastive_weight", "field=value"),
                         ("hir+no_such_field=1", "unknown option"),
                         ("hir+contrastive_score=max", "mean or sum"),
                         ("nonsense+contrastive_weight=1", "unknown method")):  # fmt: skip
        with pytest.raises(HIRError, match=message) as info:
            parse_methods(bad)
        assert "\n" not in str(info.value)


def test_a_resumed_comparison_with_nothing_left_to_run_still_writes_its_table(
    tiny_gpt2_dir, tmp_path, capsys
):
    def compare():
        return run_comparison(compare_configs(["start"], {**SETTINGS, "resume": True}), [0, 1],
                              lambda seed: Start(TASK, tiny_gpt2_dir), tmp_path)  # fmt: skip

    first = compare()
    (tmp_path / "comparison.md").unlink()
    capsys.readouterr()
    again = compare()
    printed = capsys.readouterr().out
    assert printed.count("finished before, kept") == 2
    assert printed.count("wrote ") == 1  # the table once, not once per run and again at the end
    assert again["table"] == first["table"]
    assert (tmp_path / "comparison.md").read_text().startswith("| method |")


def test_processes_sharing_a_comparison_each_run_what_no_other_holds(tiny_gpt2_dir, tmp_path, capsys):  # fmt: skip
    def compare():
        return run_comparison(compare_configs(["start", "farl"], {**SETTINGS, "resume": True}),
                              [0, 1], lambda seed: Start(TASK, tiny_gpt2_dir), tmp_path)  # fmt: skip

    def held_by_another(folder):  # a live process of this machine, as another `hir compare`
        (folder / LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename, "started": "now"}))  # fmt: skip

    def states(methods=("start", "farl", "sft")):  # what `hir compare --status` reads
        rows = comparison_status(tmp_path, list(methods), [0, 1])
        return {(r["method"], r["seed"]): (r["state"], r.get("iteration")) for r in rows}

    compare()
    farl = [tmp_path / "farl" / f"seed-{seed}" for seed in (0, 1)]
    # The other process holds seed 0, finished (it is writing the table), and seed 1, running.
    (farl[1] / "compare_run.json").unlink()
    for folder in farl:
        held_by_another(folder)
    logged = (farl[1] / "metrics.jsonl").read_text()
    assert states() == {("start", 0): ("finished", None), ("farl", 0): ("finished", None),
                        ("sft", 0): ("not started", None), ("start", 1): ("finished", None),
                        ("farl", 1): ("running", 1), ("sft", 1): ("not started", None)}  # fmt: skip
    capsys.readouterr()
    result = compare()
    printed = capsys.readouterr().out
    for seed in (0, 1):
        assert f"farl, seed {seed}: left to process {os.getppid()}" in printed
    assert "2 run(s) left to other processes (farl seed 0, farl seed 1)" in printed
    # The table has every finished run, the other process's seed 0 too.
    assert {r["method"]: r["seeds"] for r in result["table"]} == {"start": 2, "farl": 1}
    assert [(r["method"], r["seed"]) for r in result["runs"]] == [("start", 0), ("farl", 0), ("start", 1)]  # fmt: skip
    assert json.loads((tmp_path / "comparison.json").read_text())["table"] == result["table"]
    assert (farl[1] / "metrics.jsonl").read_text() == logged  # left alone
    assert json.loads((farl[1] / LOCK_NAME).read_text())["pid"] == os.getppid()
    # Once the other process is gone, the next call finishes what it left.
    for folder in farl:
        (folder / LOCK_NAME).unlink()
    assert states(["farl"])[("farl", 1)] == ("interrupted", 1)
    again = compare()
    assert {r["method"]: r["seeds"] for r in again["table"]} == {"start": 2, "farl": 2}
    assert "farl, seed 1\n" in capsys.readouterr().out
    # A comparison that starts over holds the whole folder: one that resumes waits for it.
    held_by_another(tmp_path)
    with pytest.raises(HIRError, match="in use by a comparison that starts over"):
        compare()
    capsys.readouterr()
    assert main(["compare", "--status", "--methods", "start,farl", "--seeds", "0,1",
                 "--output_dir", str(tmp_path)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "| farl | 1 | finished | " in printed and "4 runs: 4 finished" in printed
    assert f"The whole comparison is held by pid {os.getppid()}" in printed


def test_status_estimates_a_runs_hours_left_at_its_pace_so_far():
    # Evaluation before training at 50 s, then two iterations of 360 s each: 8 more take 0.8 h.
    logged = [{"iteration": 0, "wall_seconds": 50.0}, {"iteration": 1, "wall_seconds": 410.0},
              {"iteration": 2, "wall_seconds": 770.0}]  # fmt: skip
    assert hours_left(logged, 10) == pytest.approx(8 * 360 / 3600)
    assert hours_left(logged, 2) == 0.0
    assert hours_left(logged[:1], 10) is None  # no iteration yet: no pace


def test_compare_screens_each_trained_model_and_averages_the_screens_over_seeds(
    tiny_gpt2_dir, tmp_path, capsys
):
    settings = {**SETTINGS, "num_samples": 2, "temperature": 0.7, "resume": True}

    def compare():
        return run_comparison(compare_configs(["start", "sft", "farl"], settings), [0, 1],
                              lambda seed: Start(TASK, tiny_gpt2_dir), tmp_path, screen_limit=6)  # fmt: skip

    def screen_of(method, seed):
        return json.loads((tmp_path / method / f"seed-{seed}" / "screen.json").read_text())

    compare()
    for method in ("start", "sft", "farl"):
        for seed in (0, 1):
            saved = screen_of(method, seed)
            # The comparison's split and sampling settings; the start untouched, the others
            # their final checkpoints.
            assert (saved["settings"]["split"], saved["settings"]["limit"]) == ("test", 6)
            assert (saved["settings"]["num_samples"], saved["settings"]["temperature"]) == (2, 0.7)
            assert saved["settings"]["seed"] == seed
            folder = tmp_path / method / f"seed-{seed}"
            assert saved["run"] == (None if method == "start" else str(checkpoint_of(folder)))
    # transfer.md: each method's mean and std over its seeds' screens.
    transfer = {
        r["method"]: r for r in json.loads((tmp_path / "comparison.json").read_text())["transfer"]
    }
    assert list(transfer) == ["start", "sft", "farl"]
    for name in ("accuracy_correct_instruction", "same_answer_share", "pass_at_k"):
        values = [screen_of("sft", seed)["rows"][0][name] for seed in (0, 1)]
        assert transfer["sft"][name] == pytest.approx(
            [statistics.mean(values), statistics.stdev(values)]
        )
    lines = (tmp_path / "transfer.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| start", "| sft", "| farl"]
    # Resumed: screens are read back; a kept run whose checkpoints are gone is said so, not screened.
    shutil.rmtree(tmp_path / "farl" / "seed-1" / "checkpoints")
    (tmp_path / "farl" / "seed-1" / "screen.json").unlink()
    shutil.rmtree(tmp_path / "sft" / "seed-0" / "checkpoints")  # screened before: nothing lost
    sft_screen = screen_of("sft", 0)
    capsys.readouterr()
    compare()
    printed = capsys.readouterr().out
    assert "farl, seed 1: not screened" in printed and "sft, seed 0: not screened" not in printed
    assert screen_of("sft", 0) == sft_screen
    transfer = {
        r["method"]: r for r in json.loads((tmp_path / "comparison.json").read_text())["transfer"]
    }
    assert (transfer["sft"]["seeds"], transfer["farl"]["seeds"]) == (2, 1)
