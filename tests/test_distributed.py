"""Several processes through accelerate, two CPU processes (gloo) started by torchrun as fresh
interpreters (forking a process whose thread pools already ran can hang); each runs
`tests/distributed_run.py`.

- Data parallel (accelerate's default): each process samples and evaluates a share of the
  queries, all train on every sample, one writes the files.
- FSDP2: each process holds half of every weight, gathers the whole weights to generate, and
  computes what data parallel computes: the same buffer, losses and accuracies, the same
  checkpoint (written whole), and a killed run resumes to the same end.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import float32_reordering_tolerance
from safetensors.torch import load_file

from hir.models import load_policy
from hir.online.evaluate import evaluate
from hir.tasks import load_task
from hir.trainers.hir import HIRConfig, HIRTrainer

# Starts processes (`make test-all`; `make test` leaves it out).
pytestmark = pytest.mark.slow

RUNNER = Path(__file__).with_name("distributed_run.py")
# Every process dies after iteration 1's metrics are written, before its checkpoint.
KILLED_AFTER_ITERATION_1 = {"HIR_CRASH_AT": "logging:2"}


def launch(mode, method, model_dir, output_dir, iterations=2, lora_r=0, env=None):
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
               "2", str(RUNNER), mode, method, str(model_dir), str(output_dir), str(iterations),
               str(lora_r)]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)


def launched(*args, **kwargs) -> Path:
    run = launch(*args, **kwargs)
    assert run.returncode == 0, run.stderr[-3000:]
    return Path(args[3])


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def processes(folder: Path) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("process-*.json"))}


def training_metrics(folder: Path) -> list[tuple]:
    """Per iteration: what was sampled, how training went, how the policy scored (0 where a
    method does not log it)."""
    keys = ("iteration", "loss", "accuracy", "mean_score", "sample_mean_score", "kl", "reward")
    return [tuple(m.get(k, 0.0) or 0.0 for k in keys) for m in records(folder / "metrics.jsonl")]


def run_tolerance(run: Path) -> float:
    """The reordering bound (`helpers.float32_reordering_tolerance`) of the run's model. (PPO on
    the tiny T5: 1.2e-5 apart on one machine, within 1e-6 on another; the bound is 1.3e-4.)"""
    return float32_reordering_tolerance(
        json.loads((run / "config.json").read_text())["config"]["model"]
    )


def assert_same_run(sharded: Path, data_parallel: Path) -> None:
    if (data_parallel / "buffer.jsonl").is_file():  # (SFT samples nothing)
        assert (sharded / "buffer.jsonl").read_text() == (
            data_parallel / "buffer.jsonl"
        ).read_text()
    tolerance = run_tolerance(data_parallel)
    for a, b in zip(training_metrics(sharded), training_metrics(data_parallel), strict=True):
        assert a == pytest.approx(b, rel=0, abs=tolerance)
    # The checkpoints hold the same whole weights, under the same names: the bulk of each
    # tensor within the reordering bound (a weight gathered wrongly moves the median), and every
    # element within what AdamW's steps can make of gradients that differ in rounding only.
    last = sorted((sharded / "checkpoints").iterdir())[-1].name
    for name in ("model.safetensors", "adapter_model.safetensors"):
        if (data_parallel / "checkpoints" / last / name).is_file():
            a = load_file(sharded / "checkpoints" / last / name)
            b = load_file(data_parallel / "checkpoints" / last / name)
            assert a.keys() == b.keys()
            for key in a:
                assert a[key].shape == b[key].shape, key
                difference = (a[key] - b[key]).abs()
                assert difference.median() <= tolerance, key
                assert difference.max() <= adam_steps_bound(data_parallel), key


def adam_steps_bound(run: Path) -> float:
    """How far one weight may end apart in two runs whose gradients differ by rounding only:
    where an element's gradient is itself at the rounding level, Adam normalises it to a full
    step either way, and one step moves an element by at most lr (1 - beta1) / sqrt(1 - beta2)
    (Kingma and Ba, section 2.1; torch's betas 0.9, 0.999: 3.16 lr), in opposite directions at
    worst, once per optimizer step of the run."""
    learning_rate = json.loads((run / "config.json").read_text())["config"]["learning_rate"]
    steps = sum(m.get("train_steps", 0) for m in records(run / "metrics.jsonl"))
    return 2 * steps * learning_rate * 0.1 / 0.001**0.5


def assert_sharded(folder: Path) -> None:
    """Each of the two processes holds about half of the weights' elements."""
    held = processes(folder)
    assert list(held) == ["process-0-of-2", "process-1-of-2"]
    for record in held.values():
        assert record["sharded"]
        assert 0.45 * record["total"] <= record["held"] <= 0.55 * record["total"]


@pytest.fixture(scope="module")
def data_parallel_gpt2(tiny_gpt2_dir, tmp_path_factory) -> Path:
    return launched("ddp", "hir", tiny_gpt2_dir, tmp_path_factory.mktemp("ddp"))


@pytest.fixture(scope="module")
def sharded_gpt2(tiny_gpt2_dir, tmp_path_factory) -> Path:
    return launched("fsdp2", "hir", tiny_gpt2_dir, tmp_path_factory.mktemp("fsdp2"))


def test_two_processes_share_out_sampling_and_evaluation(data_parallel_gpt2, tiny_gpt2_dir):
    folder = data_parallel_gpt2
    assert {name: p["sharded"] for name, p in processes(folder).items()} == {
        "process-0-of-2": False,
        "process-1-of-2": False,
    }
    task = load_task("synthetic/sort", num_examples=40)
    train_ids = [e.id for e in task.split("train")]
    samples = [s for s in records(folder / "buffer.jsonl") if s["iteration"] == 2]
    # Every training query was sampled, by one process only: at most 3 distinct outputs each.
    assert {s["query_id"] for s in samples} == set(train_ids)
    for query_id in train_ids:
        outputs = [s["output"] for s in samples if s["query_id"] == query_id]
        assert 1 <= len(outputs) <= 3 and len(set(outputs)) == len(outputs)
    # One writer: the metrics file holds each iteration once.
    metrics = records(folder / "metrics.jsonl")
    assert [m["iteration"] for m in metrics] == [0, 1, 2]
    # Evaluation, shared out and gathered, scores the start policy as one process does.
    alone = evaluate(load_policy(tiny_gpt2_dir), task, max_new_tokens=4, batch_size=64)
    assert metrics[0]["accuracy"] == alone.accuracy
    assert (folder / "summary.json").is_file()


def test_compare_under_a_launch_runs_each_row_once_on_both_processes(
    tiny_gpt2_dir, data_parallel_gpt2, tmp_path
):
    """The main process takes each run's lock and decides for both; the HIR row is the same run
    as `hir train` under the same launch; resumed, both processes keep every row."""
    first = launch("ddp", "compare", tiny_gpt2_dir, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("hir compare: hir, seed 0\n") == 1  # said once, by the main one
    assert_same_run(tmp_path / "hir" / "seed-0", data_parallel_gpt2)
    table = (tmp_path / "comparison.md").read_text().splitlines()
    assert [line.split(" | ")[0] for line in table[2:]] == ["| start", "| hir"]
    assert not list(tmp_path.rglob(".hir*.lock"))  # every lock released
    again = launch("ddp", "compare", tiny_gpt2_dir, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished before, kept") == 2


def test_fsdp2_shards_the_weights_and_trains_as_data_parallel(sharded_gpt2, data_parallel_gpt2):
    assert_sharded(sharded_gpt2)
    assert_same_run(sharded_gpt2, data_parallel_gpt2)


def test_fsdp2_t5_with_lora(tiny_t5_dir, tmp_path):
    """An encoder-decoder model (its shared embedding tied across encoder and decoder) with a
    LoRA adapter: sharded, and the same run as data parallel."""
    sharded = launched("fsdp2", "hir", tiny_t5_dir, tmp_path / "fsdp2", lora_r=4)
    assert_sharded(sharded)
    assert_same_run(sharded, launched("ddp", "hir", tiny_t5_dir, tmp_path / "ddp", lora_r=4))


@pytest.mark.parametrize(
    ("engine", "method", "model"),
    [("fsdp2", "ppo", "t5"), ("fsdp2", "rloo", "gpt2"), ("zero3", "grpo", "gpt2")],
)
def test_sharded_every_method_trains_as_data_parallel(engine, method, model, request, tmp_path):
    """PPO: its policy and value model sharded, its rollout scored with whole weights, on an
    encoder-decoder model. RLOO: its completions scored with whole weights, its start a whole
    copy, the shares' rewards gathered; GRPO under ZeRO-3. (On a decoder-only one: the
    InstructGPT pipeline's last stage below, PPO-ptx on GPT-2; SFT: its first stage; HIR: the
    tests above. FARL is HIR's loop and update with other items, GRPO's NFT and NSR the group
    methods' scoring and steps: nothing of them is sharded differently. Their own rows were
    dropped to keep the suite under 15 minutes.)"""
    model_dir = request.getfixturevalue(f"tiny_{model}_dir")
    sharded = launched(engine, method, model_dir, tmp_path / engine)
    assert_sharded(sharded)
    if method == "ppo":
        assert (sharded / "checkpoints" / "iteration-0002" / "value_state.pt").is_file()
    assert_same_run(sharded, launched("ddp", method, model_dir, tmp_path / "ddp"))


def test_ddp_serves_the_frozen_layers_from_the_cache_and_runs_as_without(tiny_gpt2_dir, tmp_path):
    """The frozen-layer cache under DDP: each process's passes (the policy's through DDP's
    wrapper, which syncs the trained gradients; the value model's twin) are served from its own
    cache, and PPO's run is the one without the cache."""
    scope = {"lora_r": 4, "train_last_layers": 1}

    def with_scope(**overrides):
        return {**os.environ, "HIR_TEST_SCOPE": json.dumps({**scope, **overrides})}

    cached = launched("ddp", "ppo", tiny_gpt2_dir, tmp_path / "cached", env=with_scope())
    plain = launched("ddp", "ppo", tiny_gpt2_dir, tmp_path / "plain", env=with_scope(activation_cache_mb=0))  # fmt: skip
    assert_same_run(cached, plain)
    for rank in (0, 1):
        cache = json.loads((cached / f"cache-{rank}.json").read_text())
        assert cache["enabled"] and cache["twins_enabled"] == [True]
        assert cache["wrapper"] == "DistributedDataParallel" and cache["serves_the_wrapper"]
        # Every sample's frozen layers ran once: its scoring passes and PPO's epochs were served.
        assert cache["hits"] > 2 * cache["misses"] > 0
        assert json.loads((plain / f"cache-{rank}.json").read_text()) is None


def test_fsdp2_instructgpt_pipeline_trains_as_data_parallel(tiny_gpt2_dir, tmp_path):
    """SFT, the reward model and PPO-ptx, each sharded; the samples ranked for the reward model
    and the reward model's scores come from whole models. Each stage computes what data
    parallel computes (the buffer's rewards to float precision: the reward model trained
    sharded)."""
    # One PPO iteration: its samples come from the SFT model; after an update whose rewards
    # differ in the last digits, a sampled token may differ at the tiny model's temperature 2.
    sharded = launched("fsdp2", "instructgpt", tiny_gpt2_dir, tmp_path / "fsdp2", iterations=1)
    for folder in (sharded / "sft", sharded, sharded / "ppo-ptx"):  # (the reward model's: root)
        assert_sharded(folder)
    data_parallel = launched("ddp", "instructgpt", tiny_gpt2_dir, tmp_path / "ddp", iterations=1)
    assert_same_run(sharded / "sft", data_parallel / "sft")
    heads = [load_file(root / "reward_model" / "reward_head.safetensors") for root in (sharded, data_parallel)]  # fmt: skip
    # (Not the bias: the ranking loss does not depend on it, so its gradient is rounding noise,
    # which Adam scales up to steps of the learning rate's size.)
    torch.testing.assert_close(heads[0]["weight"], heads[1]["weight"], rtol=1e-3, atol=1e-4)
    # The reward model's body trains the same weights (its tied embedding, once not).
    sft = load_file(sharded / "sft" / "model" / "model.safetensors")
    trained = [{name for name, weight in load_file(root / "reward_model" / "model.safetensors").items()
                if (weight - sft[name]).abs().max() > 1e-6} for root in (sharded, data_parallel)]  # fmt: skip
    assert "transformer.wte.weight" in trained[1] and trained[0] == trained[1]
    buffers = [records(root / "ppo-ptx" / "buffer.jsonl") for root in (sharded, data_parallel)]
    assert [(s["query_id"], s["output"]) for s in buffers[0]] == [(s["query_id"], s["output"]) for s in buffers[1]]  # fmt: skip
    # The rewards up to a constant (the head's bias and the final norm's shift, which the
    # ranking loss cannot see, move by rounding noise alone).
    scores = [torch.tensor([s["score"] for s in buffer]) for buffer in buffers]
    centered = [score - score.mean() for score in scores]
    torch.testing.assert_close(centered[0], centered[1], rtol=0, atol=2e-5)
    assert "loss_ptx" in records(sharded / "ppo-ptx" / "metrics.jsonl")[1]
    for a, b in zip(*(training_metrics(root / "ppo-ptx") for root in (sharded, data_parallel)), strict=True):  # fmt: skip
        assert a == pytest.approx(b, rel=1e-3, abs=1e-4)


def test_fsdp2_killed_and_resumed_equals_unbroken(sharded_gpt2, tiny_gpt2_dir, tmp_path):
    env = {**os.environ, **KILLED_AFTER_ITERATION_1}
    killed = launch("fsdp2", "hir", tiny_gpt2_dir, tmp_path, env=env)
    assert killed.returncode != 0
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["iteration-0000"]
    launched("fsdp2", "hir", tiny_gpt2_dir, tmp_path)
    assert_same_run(tmp_path, sharded_gpt2)


def test_zero3_shards_the_weights_and_a_killed_run_ends_as_data_parallel(data_parallel_gpt2, tiny_gpt2_dir, tmp_path):  # fmt: skip
    """DeepSpeed ZeRO-3 (on CPU: accelerate enables it there only by hand, as for FSDP2): each
    process holds half of the weights; a run killed after iteration 1's metrics and resumed
    computes what data parallel computes (the fp32 master weights and the optimizer state
    written whole, and read back into the partitions)."""
    pytest.importorskip("deepspeed")
    env = {**os.environ, **KILLED_AFTER_ITERATION_1}
    assert launch("zero3", "hir", tiny_gpt2_dir, tmp_path, env=env).returncode != 0
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["iteration-0000"]
    launched("zero3", "hir", tiny_gpt2_dir, tmp_path)
    assert_sharded(tmp_path)
    assert_same_run(tmp_path, data_parallel_gpt2)


def test_fsdp2_checkpoint_resumes_on_one_process(sharded_gpt2, tiny_gpt2_dir, tmp_path):
    """A sharded run's checkpoint (whole weights, optimizer state by position) continues in one
    process: the weights and the optimizer state it restores are the ones written."""
    shutil.copytree(sharded_gpt2, tmp_path, dirs_exist_ok=True)
    for name in ("process-0-of-2.json", "process-1-of-2.json"):
        (tmp_path / name).unlink()
    shutil.rmtree(tmp_path / "checkpoints" / "iteration-0002")
    config = HIRConfig(output_dir=str(tmp_path), iterations=2, epochs_per_iteration=1,
                       batch_size=8, max_new_tokens=4, num_samples=3, report_to="none",
                       device="cpu", resume=True)  # fmt: skip
    trainer = HIRTrainer(tiny_gpt2_dir, load_task("synthetic/sort", num_examples=40), config)
    checkpoint = tmp_path / "checkpoints" / "iteration-0001"
    trainer.restore(checkpoint)
    written = load_file(checkpoint / "model.safetensors")
    for name, tensor in trainer.policy.model.state_dict().items():
        torch.testing.assert_close(tensor, written.get(name, written.get("transformer.wte.weight")))
    saved = torch.load(checkpoint / "training_state.pt", weights_only=True)["optimizer"]
    restored = trainer.optimizer.state_dict()
    assert restored["state"].keys() == saved["state"].keys()
    for index, state in saved["state"].items():
        torch.testing.assert_close(restored["state"][index]["exp_avg"], state["exp_avg"])
    summary = trainer.train()
    assert summary["iterations"] == 2


@pytest.mark.parametrize(
    ("engine", "method", "scope", "message"),
    [
        ("fsdp2", "hir", {"train_last_layers": 1}, "under FSDP2: .* add --activation_cache_mb 0"),
        ("zero3", "hir", {"train_last_layers": 1}, "under ZeRO-3: .* add --activation_cache_mb 0"),
        ("fsdp1", "hir", {}, "set fsdp_version: 2"),
        ("zero2", "hir", {}, "ZeRO stage 2 is not supported"),
        ("zero3", "ppo", {}, "PPO does not run under DeepSpeed"),
    ],
)
def test_sharding_refuses_what_it_cannot_run(engine, method, scope, message, tiny_gpt2_dir, tmp_path, monkeypatch):  # fmt: skip
    """Refused in one line, before the model is sharded. (The accelerator only claims to shard:
    the refusal comes before any process group is needed.)"""
    from types import SimpleNamespace

    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType

    import hir.trainers.loop as loop
    from hir.errors import HIRError
    from hir.models.adapters import TrainingScope
    from hir.trainers.ppo import PPOConfig, PPOTrainer

    kind = DistributedType.FSDP if engine.startswith("fsdp") else DistributedType.DEEPSPEED
    plugin = SimpleNamespace(deepspeed_config={"zero_optimization": {"stage": int(engine[-1])}})
    build_accelerator = loop.build_accelerator

    def build_claiming_to_shard(*args, **kwargs):
        accelerator = build_accelerator(*args, **kwargs)
        monkeypatch.setattr(Accelerator, "distributed_type", property(lambda self: kind))
        monkeypatch.setattr(Accelerator, "is_fsdp2", property(lambda self: engine == "fsdp2"))
        monkeypatch.setattr(AcceleratorState, "deepspeed_plugin", property(lambda self: plugin))
        return accelerator

    monkeypatch.setattr(loop, "build_accelerator", build_claiming_to_shard)
    policy = load_policy(tiny_gpt2_dir, device="cpu").set_training_scope(TrainingScope(**scope))
    trainer, config = (HIRTrainer, HIRConfig) if method == "hir" else (PPOTrainer, PPOConfig)
    with pytest.raises(HIRError, match=message) as refused:
        trainer(policy, load_task("synthetic/sort", num_examples=40),
                config(output_dir=str(tmp_path), report_to="none", device="cpu"))  # fmt: skip
    assert "\n" not in str(refused.value)


def test_steps_not_sharded_are_refused_in_one_line(tiny_gpt2_dir, monkeypatch):
    """The warm-up trains outside the online loop and does not gather sharded weights: it
    refuses FSDP in one line. The reward model trains under FSDP2 (the pipeline's test), not
    under DeepSpeed."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    from hir.errors import HIRError
    from hir.trainers.finetune import supervised_finetune
    from hir.trainers.reward_model_trainer import train_reward_model

    kind = DistributedType.FSDP
    monkeypatch.setattr(Accelerator, "distributed_type", property(lambda self: kind))
    policy = load_policy(tiny_gpt2_dir, device="cpu")
    with pytest.raises(HIRError, match="supervised fine-tuning .* does not run sharded yet"):
        supervised_finetune(policy, [("Sort: b a", "a b")], epochs=1, learning_rate=1e-4)
    kind = DistributedType.DEEPSPEED
    with pytest.raises(HIRError, match="reward-model training does not run under DeepSpeed"):
        train_reward_model(policy, [object()], epochs=1, learning_rate=1e-4)


@pytest.mark.parametrize("method", ["grpo", "rloo", "nft"])
def test_group_methods_on_two_processes_make_one_process_update(method, tiny_gpt2_dir, tmp_path):
    """Every process holds every completion and takes a share of each micro-batch; the loss of
    each share is scaled so that data parallelism's average is one process's loss on the whole
    micro-batch. So the update two processes make from an iteration's samples is the one a
    single process makes from the same samples and the same weights. (Iteration 2: RLOO's KL to
    the start, in the reward, is 0 in the first; every process needs it for every completion.)"""
    sys.path.insert(0, str(RUNNER.parent))
    from distributed_run import build_trainer

    launched_run = launched("ddp", method, tiny_gpt2_dir, tmp_path / "ddp", iterations=2)
    checkpoints = launched_run / "checkpoints"
    alone = build_trainer(method, tiny_gpt2_dir, str(tmp_path / "alone"), 2, 0)
    alone.restore(checkpoints / "iteration-0001")
    alone.buffer.load(checkpoints / "iteration-0002" / "buffer.jsonl")
    metrics = alone.update(alone.training_items(2), 2)
    logged = records(launched_run / "metrics.jsonl")[2]
    assert metrics["train_steps"] == logged["train_steps"] > 1
    assert metrics["reward"] == pytest.approx(logged["reward"], abs=1e-6)
    if method == "rloo":
        assert logged["kl"] != 0 and metrics["kl"] == pytest.approx(logged["kl"], rel=1e-4)
    if method == "nft":
        assert logged["groups_without_spread"] < 1  # some groups teach something
    trained = load_file(checkpoints / "iteration-0002" / "model.safetensors")
    before = load_file(checkpoints / "iteration-0001" / "model.safetensors")
    weights = alone.policy.model.state_dict()
    tolerance = run_tolerance(launched_run)
    apart, moved = 0.0, 0.0
    for name, tensor in trained.items():
        difference = (weights[name] - tensor).abs()
        assert difference.median() <= tolerance, name
        assert difference.max() <= adam_steps_bound(launched_run), name
        apart += float(difference.square().sum())
        moved += float((tensor - before[name]).square().sum())
    # The two updates are one: they differ by far less than either moved the weights.
    assert apart**0.5 < 0.01 * moved**0.5
