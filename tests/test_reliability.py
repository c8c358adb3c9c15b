"""Bad input ends in exit code 2 and one line that names the problem, touching nothing; a
damaged checkpoint is skipped for the newest intact one; a resume continues the same run."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hir.cli import main
from hir.tasks import load_task
from hir.trainers.hir import HIRConfig, HIRTrainer

TRAIN = ["train", "--task", "synthetic/count", "--num_examples", "30", "--iterations", "1",
         "--max_new_tokens", "3", "--report_to", "none", "--eval_limit", "4"]  # fmt: skip


def folder_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def write(path: Path, data: bytes | str) -> str:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(path)


def jsonl_cases(tmp: Path) -> list[tuple[str, str]]:
    """(file, expected message) for damaged user data."""
    return [
        (write(tmp / "latin1.jsonl", b'{"query": "caf\xe9", "answer": "1"}\n'), "line 1 is not UTF-8"),
        (write(tmp / "nojson.jsonl", '{"query": "a", "answer": "1"}\n{oops\n'), "line 2 is not valid JSON"),
        (write(tmp / "list.jsonl", '[1, 2]\n'), "line 1 is not a JSON object"),
        (write(tmp / "null.jsonl", '{"query": "a", "answer": null}\n'), "null as its query or answer"),
        (write(tmp / "object.jsonl", '{"query": "a", "answer": {"x": 1}}\n'), "an object as its query or answer"),
        (write(tmp / "dup.jsonl", '{"id": 7, "query": "a", "answer": "1"}\n{"id": 7, "query": "b", "answer": "2"}\n'),
         "records 0 and 1 share the id '7'"),
        (write(tmp / "nofield.jsonl", '{"question": "a", "answer": "1"}\n'), "has no 'query' field"),
        (str(tmp / "missing.jsonl"), "does not exist"),
    ]  # fmt: skip


def damaged_models(tmp: Path, model: str, t5_model: str) -> list[tuple[str, str]]:
    """(model folder, expected message): no tokenizer (GPT-2, T5), truncated weights."""
    cases = []
    for name, source in (("gpt2-no-tokenizer", model), ("t5-no-tokenizer", t5_model)):
        folder = tmp / name
        shutil.copytree(source, folder)
        for path in folder.iterdir():
            if path.name not in ("config.json", "generation_config.json", "model.safetensors"):
                path.unlink()
        cases.append((str(folder), "holds no tokenizer"))
    failing_template = tmp / "failing-template"  # a chat template that raises
    shutil.copytree(model, failing_template)
    tokenizer_config = json.loads((failing_template / "tokenizer_config.json").read_text())
    tokenizer_config["chat_template"] = "{{ raise_exception('only one turn, please') }}"
    (failing_template / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    cases.append((str(failing_template), "chat template fails on a user turn and an assistant turn (only one turn, please)"))  # fmt: skip
    reshaped = tmp / "reshaped"  # a config whose shapes do not fit the weights
    shutil.copytree(model, reshaped)
    config = json.loads((reshaped / "config.json").read_text())
    (reshaped / "config.json").write_text(json.dumps({**config, "n_embd": 2 * config["n_embd"]}))
    cases.append((str(reshaped), "do not fit its config"))
    truncated = tmp / "truncated"
    shutil.copytree(model, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    cases.append((str(truncated), "cannot be read"))
    return cases


def bad_inputs(tmp: Path, model: str, t5_model: str) -> list[tuple[list[str], str]]:
    out = ["--output_dir", str(tmp / "run")]
    a_file = write(tmp / "a_file", "not a folder")
    hang = write(
        tmp / "hang.py", "import time\ndef feedback(output, example):\n    time.sleep(60)\n"
    )
    yaml_list = write(tmp / "list.yaml", "- 1\n- 2\n")
    yaml_float = write(tmp / "float.yaml", "iterations: 1.5\n")
    yaml_unknown = write(tmp / "unknown.yaml", "iteratons: 2\n")
    gguf = write(tmp / "broken.gguf", b"GGUF\x03\x00\x00\x00garbage")
    cases = [
        (["frobnicate"], "unknown command 'frobnicate'"),
        ([*TRAIN, "--model", model, "--bogus", "1", *out], "--bogus"),
        (["train", "--method", "dpo", "--model", model, *out], "unknown method"),
        ([*TRAIN, "--model", model, "--iterations", "-1", *out], "iterations must be >= 0"),
        ([*TRAIN, "--model", model, "--learning_rate=-1e-4", *out], "learning_rate must be > 0"),
        ([*TRAIN, "--model", model, "--top_p", "1.5", *out], "top_p must be in (0, 1]"),
        ([*TRAIN, "--model", model, "--top_k", "-1", *out], "top_k must be >= 0"),
        ([*TRAIN, "--model", model, "--temperature", "0", *out], "temperature must be > 0"),
        ([*TRAIN, "--model", model, "--num_samples", "0", *out], "num_samples must be >= 1"),
        ([*TRAIN, "--model", model, "--max_new_tokens", "2000", *out], "leave no room for the prompt"),
        ([*TRAIN, "--model", model, "--output_dir", a_file], "is a file, not a folder"),
        ([*TRAIN, "--model", model, "--output_dir", f"{a_file}/run"], "which is a file"),
        ([*TRAIN, "--model", model, "--feedback", f"{hang}:feedback", "--feedback_timeout", "0.3", *out],
         "took more than 0.3s on example"),
        ([*TRAIN, "--model", model, "--feedback_timeout", "0", *out], "feedback_timeout must be > 0"),
        ([*TRAIN, "--model", model, "--config", yaml_list, *out], "list.yaml"),
        (["train", "--task", "synthetic/count", "--model", model, "--config", yaml_float, *out],
         "iterations must be int"),
        ([*TRAIN, "--model", model, "--config", yaml_unknown, *out], "iteratons"),
        ([*TRAIN, "--model", model, "--report_to", "bogus", *out], "unknown trackers ['bogus']"),
        ([*TRAIN, "--model", model, "--device", "gpu7", *out], "device must be auto, cpu, cuda"),
        ([*TRAIN, "--model", model, "--warmup_steps", "5", *out], "warmup_steps needs"),
        ([*TRAIN, "--model", model, "--resume", "--overwrite_output_dir", *out], "exclude each other"),
        ([*TRAIN, "--model", model, "--mixed_precision", "fp8", *out], "mixed_precision must be"),
        ([*TRAIN, "--model", model, "--eval_split", "dev", *out], "eval_split must be"),
        ([*TRAIN, "--model", model, "--eval_split", "validation", *out], "no validation examples"),
        ([*TRAIN, "--model", model, "--buffer_retention", "some", *out], "buffer retention 'some'"),
        ([*TRAIN, "--model", model, "--label_smoothing", "1", *out], "label_smoothing must be"),
        ([*TRAIN, "--model", model, "--prompt_format", "chat", *out], "needs a tokenizer with a chat template"),
        ([*TRAIN, "--model", model, "--prompt_format", "fancy", *out], "unknown prompt format 'fancy'"),
        ([*TRAIN, "--model", model, "--lora_dropout", "1.5", *out], "--lora_dropout must be in [0, 1)"),
        ([*TRAIN, "--model", model, "--train_last_layers", "99", *out], "exceeds the model's 2 layers"),
        ([*TRAIN, "--model", model, "--lora_r", "4", "--lora_target_modules", "q_proj", *out], "matches no layer"),
        ([*TRAIN, "--model", model, "--extract", "regex:([", *out], "does not compile"),
        ([*TRAIN, "--model", model, "--extract", "magic", *out], "unknown answer extraction 'magic'"),
        ([*TRAIN, "--model", model, "--feedback", "nocolon", *out], "not of the form module:function"),
        ([*TRAIN, "--model", model, "--feedback", "no_such_module_x:f", *out], "cannot import feedback module"),
        ([*TRAIN, "--model", "/no/such/model", *out], "does not exist"),
        ([*TRAIN, *out], "no model given"),
        ([*TRAIN, "--model", "smollm2-135m-instuct", *out], "smollm2-135m-instruct"),
        ([*TRAIN, "--model", gguf, *out], "broken.gguf"),
        (["train", "--task", "no/such", "--model", model, *out], "unknown task 'no/such'"),
        (["train", "--task", "bigbench/object_counting", "--bigbench_dir", str(tmp / "nope"), "--model", model, *out],
         "does not exist"),
        (["eval", "--model", model, "--task", "synthetic/count", "--limit", "0"], "--limit must be >= 1"),
        (["eval", "--model", model, "--task", "synthetic/count", "--split", "dev"], "--split must be"),
        (["eval", "--model", model, "--task", "synthetic/count", "--split", "validation"], "no validation examples"),
        (["compare", "--model", model, "--seeds", "a,b", *out], "--seeds must be comma-separated integers"),
        (["compare", "--model", model, "--methods", "hir,magic", *out], "unknown method(s) magic"),
        (["export", str(tmp / "nothing"), "--output_dir", str(tmp / "x")], "neither a run folder"),
        # Refused before any work (each of these used to fail after a model load or a stage).
        (["eval", "--model", model, "--task", "synthetic/count", "--output_dir", a_file], "is a file, not a folder"),
        (["screen", "--model", model, "--tasks", "synthetic/count", "--output_dir", a_file], "is a file, not a folder"),
        (["compare", "--model", model, "--seeds", "0,4294967296", *out], "--seeds 4294967296 is outside"),
        ([*TRAIN, "--model", model, "--seed", "-1", *out], "seed must be in [0, 2**32)"),
        (["instructgpt", "--model", model, "--task", "synthetic/count", "--reward_model_queries", "-3", *out],
         "--reward_model_queries must be >= 1"),
        (["tasks", "export", "synthetic/count", "--output", str(tmp)], "is a folder, not a file"),
    ]  # fmt: skip
    if not torch.cuda.is_available():
        cases.append(
            ([*TRAIN, "--model", model, "--device", "cuda", *out], "torch sees no CUDA GPU")
        )
    if os.geteuid() != 0:  # root writes anywhere
        read_only = tmp / "read-only"
        read_only.mkdir(mode=0o555)
        cases.append(
            ([*TRAIN, "--model", model, "--output_dir", str(read_only / "run")], "is read-only")
        )
    for folder, message in damaged_models(tmp, model, t5_model):
        cases.append(([*TRAIN, "--model", folder, *out], message))
    for path, message in jsonl_cases(tmp):
        cases.append((["train", "--task", f"jsonl:{path}", "--model", model, *out], message))
    return cases


def test_every_bad_input_is_one_clear_line_and_touches_nothing(
    tiny_gpt2_dir, tiny_t5_dir, tmp_path, capsys
):
    cases = bad_inputs(tmp_path, tiny_gpt2_dir, tiny_t5_dir)
    assert len(cases) >= 40
    failures = []
    for argv, message in cases:
        code = main(argv)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("hir: error:")]
        if code != 2 or len(lines) != 1 or message not in lines[0] or "Traceback" in err:
            failures.append((argv[:2], message, code, err[-300:]))
        if (tmp_path / "run" / "checkpoints").exists():
            failures.append((argv[-6:], "wrote checkpoints", code, err[-300:]))
            shutil.rmtree(tmp_path / "run")
    assert not failures, failures


def test_feedback_may_return_numpy_bools(tmp_path):
    task = load_task(
        "synthetic/count", num_examples=10, feedback=lambda o, e: np.bool_(o == e.target)
    )
    example = task.examples[0]
    assert task.score(example.target, example) == 1.0 and task.score("x", example) == 0.0


QUICK = dict(batch_size=8, max_new_tokens=3, num_samples=2, report_to="none", seed=0,
             max_queries_per_iteration=6, eval_limit=4, keep_checkpoints=3)  # fmt: skip
TASK = load_task("synthetic/count", num_examples=30)


def run(model, folder: Path, iterations: int, **overrides) -> dict:
    torch.set_num_threads(1)
    config = HIRConfig(output_dir=str(folder), iterations=iterations, **{**QUICK, **overrides})
    return HIRTrainer(model, overrides.pop("task", TASK), config).train()


@pytest.fixture(scope="module")
def two_iterations(tiny_gpt2_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("unbroken")
    run(tiny_gpt2_dir, folder, 2)
    return folder


def cli_args(model: str, folder: Path, *extra: str) -> list[str]:
    """`hir train` with the settings of `run`'s QUICK config."""
    quick = [f"--{k}={v}" for k, v in QUICK.items()]
    return ["train", "--task", "synthetic/count", "--num_examples", "30", "--model", model,
            "--output_dir", str(folder), "--iterations", "2", *quick, *extra]  # fmt: skip


def test_a_resume_with_other_run_settings_is_refused_and_changes_nothing(tiny_gpt2_dir, two_iterations,
                                                                          tmp_path, capsys):  # fmt: skip
    folder = tmp_path / "run"
    shutil.copytree(two_iterations, folder)
    before = folder_digest(folder)
    assert main(cli_args(tiny_gpt2_dir, folder, "--resume", "--seed", "5")) == 2
    assert "--resume with a different seed" in capsys.readouterr().err
    assert main(cli_args(tiny_gpt2_dir, folder, "--resume", "--task", "synthetic/sort")) == 2
    assert "different task" in capsys.readouterr().err
    assert main(cli_args(tiny_gpt2_dir, folder, "--resume", "--temperature", "0.5")) == 2
    assert "different temperature" in capsys.readouterr().err
    assert main(cli_args(tiny_gpt2_dir, folder)) == 2  # without --resume: refused as well
    assert "--resume to continue it" in capsys.readouterr().err
    assert folder_digest(folder) == before
    # What does not change the computation may change: more iterations continue the run.
    assert (
        main(
            cli_args(tiny_gpt2_dir, folder, "--resume", "--iterations", "3", "--report_to", "none")
        )
        == 0
    )


def test_a_damaged_latest_checkpoint_falls_back_to_the_intact_one(tiny_gpt2_dir, two_iterations, tmp_path,
                                                                  capsys):  # fmt: skip
    """Each file of the latest checkpoint in turn is truncated (or a buffer line dropped, or the
    file deleted): the resume skips it, restarts from iteration 1, and ends equal to the
    unbroken run."""
    expected_buffer = (two_iterations / "buffer.jsonl").read_text()
    expected = [
        json.loads(line)["accuracy"]
        for line in (two_iterations / "metrics.jsonl").read_text().splitlines()
    ]
    names = sorted(p.name for p in (two_iterations / "checkpoints" / "iteration-0002").iterdir())
    assert {"model.safetensors", "training_state.pt", "buffer.jsonl", "history.jsonl"} <= set(names)
    damages = [(name, "truncate") for name in names if name != "COMPLETE.json"]
    damages += [
        ("buffer.jsonl", "drop last line"),
        ("training_state.pt", "delete"),
        ("COMPLETE.json", "delete"),
    ]
    for name, damage in damages:
        folder = tmp_path / f"{name}-{damage}".replace(" ", "-")
        shutil.copytree(two_iterations, folder)
        path = folder / "checkpoints" / "iteration-0002" / name
        if damage == "truncate":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif damage == "drop last line":
            path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
        else:
            path.unlink()
        run(tiny_gpt2_dir, folder, 2, resume=True)
        err = capsys.readouterr().err
        if name != "COMPLETE.json":  # without it the folder is not a finished checkpoint at all
            assert "skipping checkpoint iteration-0002" in err, (name, damage)
        assert (folder / "buffer.jsonl").read_text() == expected_buffer, (name, damage)
        got = [
            json.loads(line)["accuracy"]
            for line in (folder / "metrics.jsonl").read_text().splitlines()
        ]
        assert got == expected, (name, damage)


def test_no_intact_checkpoint_is_one_line(tiny_gpt2_dir, two_iterations, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(two_iterations, folder)
    for checkpoint in (folder / "checkpoints").iterdir():  # (iteration 0's buffer is empty)
        weights = checkpoint / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    assert main(cli_args(tiny_gpt2_dir, folder, "--resume")) == 2
    assert "no intact checkpoint" in capsys.readouterr().err


def test_leftover_temporary_files_are_removed_on_the_next_start(tiny_gpt2_dir, tmp_path):
    (tmp_path / "run").mkdir()
    stale = tmp_path / "run" / ".buffer.jsonl.abc123.tmp"
    stale.write_text("half a line")
    run(tiny_gpt2_dir, tmp_path / "run", 0)
    assert not stale.exists()
