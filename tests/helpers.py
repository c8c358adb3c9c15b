"""Helpers the test modules share (fixtures live in conftest.py): a `hir` process run on one
thread and killed where asked, a short training run, what a run ends with, and hand
computations the trainers' losses are checked against."""

import json
import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

SHARED_BIGBENCH = Path(__file__).resolve().parents[2] / "shared" / "bigbench"
SHARED_IFEVAL = SHARED_BIGBENCH.parent / "ifeval"

ITERATIONS = 3


def hir(args: list[str], crash_at: str | None = None) -> subprocess.CompletedProcess:
    """`python -m hir ARGS` on one thread, killed at `crash_at` (POINT:N) if given."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("HIR_CRASH_AT", None)
    if crash_at:
        env["HIR_CRASH_AT"] = crash_at
    return subprocess.run([sys.executable, "-m", "hir", *args], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


# Half of a random model's outputs succeed, so that FARL has samples to train on and PPO rewards
# that vary.
FEEDBACK = "def feedback(output, example):\n    return float(len(output) % 2 == 0)\n"


def train(model: str, method: str, output_dir: Path, *extra: str, crash_at: str | None = None):
    feedback = output_dir.parent / "even_length.py"
    if not feedback.exists():
        feedback.write_text(FEEDBACK)
    command = ["train", "--method", method, "--model", model,
               "--task", "synthetic/count", "--num_examples", "24", "--iterations", str(ITERATIONS),
               "--max_new_tokens", "3", "--batch_size", "4",
               "--eval_limit", "6", "--keep_checkpoints", "1", "--report_to", "none",
               "--feedback", f"{feedback}:feedback", "--output_dir", str(output_dir), *extra]  # fmt: skip
    if method != "sft":  # SFT trains on labels: it samples nothing
        command += ["--num_samples", "2"]
    if method != "ppo":  # 2 epochs, not 10: every kill point is still reached in iteration 1
        command += ["--epochs_per_iteration", "2"]
    return hir(command, crash_at)


def outcome(output_dir: Path) -> tuple[bytes, list[float], bytes]:
    """The buffer (SFT keeps none), the accuracy per iteration and the final weights."""
    metrics = (output_dir / "metrics.jsonl").read_text().splitlines()
    buffer = output_dir / "buffer.jsonl"
    (last,) = (output_dir / "checkpoints").iterdir()  # --keep_checkpoints 1
    return (buffer.read_bytes() if buffer.is_file() else b"",
            [json.loads(m)["accuracy"] for m in metrics],
            (last / "model.safetensors").read_bytes())  # fmt: skip


def killed_before_its_rename(args: list[str], target: Path) -> None:
    """`hir ARGS` killed at the crash point `staged`: a staging folder, nothing at `target`."""
    killed = hir(args, crash_at="staged:1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (target / "config.json").exists()  # nothing half-written at the target
    assert [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.staging-")]


def weighted_ce_by_hand(trainer, items) -> float:
    """The weighted CE a supervised trainer's loss should give for `items`, item by item: each
    item's summed NLL times its weight, over the plain token count (no label smoothing)."""
    nll, tokens = 0.0, 0
    for item in items:
        prompt = trainer.task.prompt(item.example.query, item.instruction)
        statistics = trainer.policy.statistics_for([prompt], [item.output])
        nll += item.weight * -statistics.logprob.sum().item()
        tokens += statistics.mask.sum().item()
    return nll / tokens


def write_task(root: Path, folder: str, data: dict) -> Path:
    path = root / folder / "task.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def float32_reordering_tolerance(model_dir: str | Path) -> float:
    """How far a number of order 1 (a loss, a KL, a reward in [0, 1]) computed by the model in
    `model_dir` may drift between two computations that take the same float32 sums in another
    order (FSDP2's reduce-scatter against DDP's all-reduce, another library's kernels for the
    same maths). Summing n terms in any order is off by at most (n - 1) u sum|x_i|
    (u = 2**-24; Higham, Accuracy and Stability of Numerical Algorithms, eq. 4.4); one forward
    pass chains the sums of every layer's attention (width terms, twice) and feed-forward
    (width, then ff terms), the output layer (width) and the softmax's normalizer (vocabulary):
    the bound for the model, from its config (tiny T5: 1.3e-4; tiny GPT-2: 8.1e-5)."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    width = config.get("d_model") or config["n_embd"]
    ff = config.get("d_ff") or config.get("n_inner") or 4 * width
    layers = config.get("num_layers", 0) + config.get("num_decoder_layers", 0) or config["n_layer"]
    summands = layers * (2 * width + width + ff) + width + config["vocab_size"]
    return summands * 2.0**-24


@contextmanager
def killed_in_update(monkeypatch, trainer_class, call: int = 2):
    """While the block runs, `trainer_class.update` raises KeyboardInterrupt on its `call`-th
    call (a run killed mid-way, in-process); the real update is back afterwards."""
    real_update = trainer_class.update
    calls = {"n": 0}

    def dies(self, items, iteration):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return real_update(self, items, iteration)

    monkeypatch.setattr(trainer_class, "update", dies)
    try:
        yield
    finally:
        monkeypatch.setattr(trainer_class, "update", real_update)
