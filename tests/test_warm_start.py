import json

import pytest

from hir import HIRError
from hir.cli import main
from hir.recipes.small_start import SmallStart, small_start_from_split
from hir.tasks import load_task

TINY = SmallStart(arch="gpt2", size="tiny", vocab_size=300, epochs=1, labeled_fraction=0.25)


def test_warm_up_queries_are_held_out_of_training_and_the_test_split_is_untouched(tmp_path):
    task = load_task("synthetic/sort", num_examples=40)
    held, model_dir, pairs = small_start_from_split(task, tmp_path, TINY, seed=3)
    train, rest = task.split("train"), {e.id for e in held.split("train")}
    warmed = {e.id for e in train} - rest
    assert len(warmed) == round(0.25 * len(train)) and rest < {e.id for e in train}
    assert [e.id for e in held.split("test")] == [e.id for e in task.split("test")]
    assert (model_dir / "config.json").is_file()
    # Both instructions appear in the warm-up pairs, and only warm-up queries do.
    queries = {e.query: e.id for e in train}
    assert {p.split("\n\n")[0] for p, _ in pairs} == {
        task.correct_instruction,
        task.wrong_instruction,
    }
    assert all(queries[p.split("Q: ", 1)[1].rsplit("\nA:", 1)[0]] in warmed for p, _ in pairs)
    # The seed chooses the warm-up queries, the same way every time.
    again, _, _ = small_start_from_split(task, tmp_path / "again", TINY, seed=3)
    assert again.held_out_train_ids == held.held_out_train_ids


def test_bad_warm_start_settings_are_refused():
    with pytest.raises(HIRError, match="ARCH-SIZE"):
        SmallStart.parse("gpt2")
    with pytest.raises(HIRError, match="unknown warm-start size"):
        SmallStart.parse("gpt2-huge")
    with pytest.raises(HIRError, match="labeled fraction"):
        SmallStart(labeled_fraction=1.0)


def test_compare_with_a_small_start_runs_ppo_ptx_on_the_warm_up_data(tmp_path):
    # (--warm_start_epochs: the earlier name of --small_start_epochs, kept as an alias)
    args = ["compare", "--small_start", "gpt2-tiny", "--warm_start_epochs", "1", "--methods", "start,ppo-ptx",
            "--seeds", "0", "--task", "synthetic/sort", "--num_examples", "40", "--iterations", "1",
            "--max_new_tokens", "4", "--batch_size", "16", "--output_dir", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    metrics = [json.loads(line) for line in (tmp_path / "ppo-ptx" / "seed-0" / "metrics.jsonl").read_text().splitlines()]  # fmt: skip
    assert metrics[-1]["loss_ptx"] > 0
    table = (tmp_path / "comparison.md").read_text()
    assert "| start |" in table and "| ppo-ptx |" in table


def test_ppo_ptx_without_warm_up_data_is_refused(tiny_gpt2_dir, tmp_path, capsys):
    args = ["compare", "--model", tiny_gpt2_dir, "--methods", "ppo-ptx", "--seeds", "0",
            "--task", "synthetic/sort", "--output_dir", str(tmp_path)]  # fmt: skip
    assert main(args) == 2
    assert "ppo-ptx needs" in capsys.readouterr().err
