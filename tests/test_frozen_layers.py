"""The frozen layers' activations, kept per block of tokens (`--train_last_layers` with
`--activation_cache_mb`): the same logits and gradients as running every layer, each block's
frozen layers run once, and a run that uses them resumes exactly."""

import copy
import gc
import json

import pytest
import torch

from hir.losses import label_smoothed_nll
from hir.models import load_policy, wrap_policy
from hir.models.adapters import TrainingScope
from hir.models.speed.blocks import block_ends
from hir.tasks import load_task
from hir.trainers.hir import HIRConfig, HIRTrainer

PROMPTS = ["Count: a b", "Count: a b", "Count: a b c d", "Count: a b c d", "Count: x"]
OUTPUTS = ["2", "two things", "4", "4 items here", "1"]


def _policy(folder, **scope):
    return load_policy(folder).set_training_scope(TrainingScope(train_last_layers=1, **scope))


def _loss_and_grads(policy, share):
    batch = policy.encode(PROMPTS, OUTPUTS, share_prompts=share)
    loss = label_smoothed_nll(policy.output_statistics(batch), 0.0)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.requires_grad}
    policy.model.zero_grad()
    return loss.detach(), grads


@pytest.mark.parametrize("lora_r", [0, 4])
@pytest.mark.parametrize("share", [False, True])
@pytest.mark.parametrize("fixture", ["tiny_llama_chat_dir", "tiny_gpt2_dir"])
def test_kept_activations_give_the_same_loss_and_gradients(fixture, share, lora_r, request):
    policy = _policy(request.getfixturevalue(fixture), lora_r=lora_r)
    cache = policy.frozen_cache
    assert cache is not None and cache.first_trained == 1
    policy.frozen_cache = None
    expected_loss, expected_grads = _loss_and_grads(policy, share)
    policy.frozen_cache = cache
    for _ in range(2):  # computed, then served
        loss, grads = _loss_and_grads(policy, share)
        torch.testing.assert_close(loss, expected_loss, atol=1e-6, rtol=1e-5)
        for name, grad in grads.items():
            torch.testing.assert_close(grad, expected_grads[name], atol=1e-6, rtol=1e-4)
    assert cache.enabled
    # One entry per distinct sequence, whether its prompt was shared or not.
    assert cache.misses == len(set(zip(PROMPTS, OUTPUTS))) and cache.hits > 0


@pytest.mark.parametrize(("fixture", "lora_r"), [("tiny_llama_chat_dir", 4), ("tiny_gpt2_dir", 0)])
def test_a_value_model_copied_from_the_policy_reads_the_policys_kept_activations(
    fixture, lora_r, request
):
    """PPO's value model: its frozen layers are the policy's, so its passes are handed the
    activations the policy keeps (no new ones computed) and give the values and gradients of
    running every layer."""
    from hir.models.scalar_head import ScalarHeadModel

    policy = _policy(request.getfixturevalue(fixture), lora_r=lora_r)
    value_model = ScalarHeadModel(policy, share_frozen_layers=True)
    torch.nn.init.normal_(value_model.head.weight)  # nonzero gradients into the body
    every_layer = ScalarHeadModel(policy)  # the same weights, not sharing
    every_layer.load_state_dict(value_model.state_dict())
    batch = policy.encode(PROMPTS, OUTPUTS)

    def values_and_grads(value_model):
        values, labels = value_model(batch)
        values = values * (labels != -100)  # what PPO reads: the output positions
        values.sum().backward()
        grads = {n: p.grad.clone() for n, p in value_model.named_parameters() if p.grad is not None}
        value_model.zero_grad()
        return values.detach(), grads

    expected_values, expected_grads = values_and_grads(every_layer)
    assert any(n.startswith("body.") for n in expected_grads)
    policy.output_logits(batch)  # the policy's pass keeps the activations
    cache, computed = policy.frozen_cache, policy.frozen_cache.misses
    for _ in range(2):  # (float sums in another order: thread counts differ across the suite)
        values, grads = values_and_grads(value_model)
        torch.testing.assert_close(values, expected_values, atol=1e-4, rtol=1e-3)
        assert grads.keys() == expected_grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, expected_grads[name], atol=1e-4, rtol=1e-3)
    assert value_model.frozen_twin.enabled and cache.misses == computed and cache.hits > 0
    assert every_layer.frozen_twin is None and list(policy.frozen.twins) == [
        value_model.frozen_twin
    ]
    del value_model, every_layer  # the policy does not keep a dropped copy's twin alive
    gc.collect()
    assert not policy.frozen.twins


def test_a_frozen_copy_wrapped_as_a_policy_of_its_own_reads_the_kept_activations(
    tiny_llama_chat_dir,
):
    """PPO's reference without LoRA: a frozen copy of the start, a policy of its own, whose
    cache is a twin of the policy's."""
    policy = _policy(tiny_llama_chat_dir)
    reference_model = copy.deepcopy(policy.model).requires_grad_(False)
    reference = wrap_policy(reference_model, policy.tokenizer)
    batch = policy.encode(PROMPTS, OUTPUTS)
    expected, labels = reference.output_logits(batch)  # every layer runs
    reference.frozen_cache = policy.share_frozen_layers(reference_model)
    policy.output_logits(batch)
    computed = policy.frozen_cache.misses
    got, _ = reference.output_logits(batch)
    real = (labels != -100).unsqueeze(-1)
    torch.testing.assert_close(got * real, expected * real, atol=1e-5, rtol=1e-4)
    assert reference.frozen_cache.enabled and policy.frozen_cache.misses == computed


def _distinct_blocks(policy, prompts, outputs) -> dict[tuple, int]:
    """Each distinct block key of the (prompt, output) sequences, with its length in tokens."""
    batch = policy.encode(prompts, outputs)
    blocks = {}
    for ids, mask in zip(batch.inputs["input_ids"], batch.inputs["attention_mask"]):
        sequence = tuple(ids[mask.bool()].tolist())
        start = 0
        for end in block_ends(len(sequence)):
            blocks[sequence[:end]] = end - start
            start = end
    return blocks


def test_the_frozen_layers_run_once_per_block(tiny_llama_chat_dir):
    policy = _policy(tiny_llama_chat_dir)
    policy.frozen_cache.checked = {"flat", "shared"}  # no first-use check: count the cache's passes
    policy.output_layers.for_model(policy.model)  # nor the output layer's
    rows = []
    policy.model.model.layers[0].register_forward_hook(
        lambda module, args, output: rows.append(args[0].shape[0])
    )
    for share in (False, True, True):
        _loss_and_grads(policy, share)
    assert sum(rows) == len(_distinct_blocks(policy, PROMPTS, OUTPUTS))
    rows.clear()
    _loss_and_grads(policy, True)
    assert rows == []


def test_a_prefix_that_sequences_share_runs_through_the_frozen_layers_once(tiny_llama_chat_dir):
    policy = _policy(tiny_llama_chat_dir)
    query = "Count: " + " ".join("abcdefghijklmnopqrstuvwxyz")
    prompts = [f"{query} Give a {kind} answer." for kind in ("correct", "wrong") for _ in range(3)]
    outputs = ["1", "2 things", "26 letters"] * 2
    shapes = []
    policy.model.model.layers[0].register_forward_hook(
        lambda module, args, output: shapes.append(args[0].shape[:2])
    )
    sequences = _rows_of(policy, prompts, outputs)
    with torch.no_grad():
        policy.frozen_cache._kept(sequences)
    # One row per distinct block, one pass per block position.
    assert sum(r for r, _ in shapes) == len(_distinct_blocks(policy, prompts, outputs))
    assert len(shapes) == len(block_ends(max(len(s) for s in sequences)))
    tokens_run = sum(r * t for r, t in shapes)
    assert tokens_run < sum(len(s) for s in sequences) / 2  # six sequences, one long shared query


def _rows_of(policy, prompts, outputs) -> list[tuple[int, ...]]:
    batch = policy.encode(prompts, outputs)
    return [tuple(ids[mask.bool()].tolist())
            for ids, mask in zip(batch.inputs["input_ids"], batch.inputs["attention_mask"])]  # fmt: skip


def test_kept_blocks_do_not_depend_on_the_company_they_were_computed_in(tiny_llama_chat_dir):
    prompts = [f"Count: a b c d e f g h i j k l m Give a {k} answer." for k in ("correct", "wrong")]
    outputs = ["13 letters", "3"]
    alone = _policy(tiny_llama_chat_dir)
    together = _policy(tiny_llama_chat_dir)
    rows = _rows_of(alone, prompts, outputs)
    with torch.no_grad():
        first = alone.frozen_cache._kept(rows[:1])[0]
        both = together.frozen_cache._kept(rows[::-1])[1]
    assert torch.equal(first, both)


def test_sub_output_cuts_are_served_by_the_whole_sequence(tiny_llama_chat_dir):
    policy = _policy(tiny_llama_chat_dir)
    policy.output_logits(policy.encode(["Count: a b"], ["4 items here"]))
    misses = policy.frozen_cache.misses
    policy.output_logits(policy.encode(["Count: a b"], [" items here"], contexts=["4"]))
    assert policy.frozen_cache.misses == misses


def test_loading_weights_forgets_the_kept_activations(tiny_llama_chat_dir):
    policy = _policy(tiny_llama_chat_dir)
    policy.output_logits(policy.encode(PROMPTS, OUTPUTS))
    assert policy.frozen_cache.entries
    policy.load_weights(tiny_llama_chat_dir)
    assert not policy.frozen_cache.entries


def test_a_layer_the_stand_ins_do_not_fit_switches_the_cache_off(tiny_llama_chat_dir, capsys):
    policy = _policy(tiny_llama_chat_dir)
    batch = policy.encode(PROMPTS, OUTPUTS)
    expected, _ = policy._output_logits(batch, policy.model)
    # A frozen layer with dropout in training mode: its activations are not a function of the
    # tokens, so keeping them would change the model. The first-use check finds it.
    policy.model.config.attention_dropout = 0.5
    for layer in policy.model.model.layers:
        layer.self_attn.attention_dropout = 0.5
    policy.model.train()
    policy.output_logits(batch)
    assert not policy.frozen_cache.enabled
    assert "not caching the frozen layers' activations" in capsys.readouterr().err
    policy.model.eval()
    actual, _ = policy.output_logits(batch)  # the ordinary path from then on
    torch.testing.assert_close(actual, expected)


def test_no_cache_when_every_layer_trains_or_when_turned_off(tiny_llama_chat_dir):
    assert load_policy(tiny_llama_chat_dir).set_training_scope(TrainingScope(lora_r=4)).frozen_cache is None  # fmt: skip
    assert _policy(tiny_llama_chat_dir, activation_cache_mb=0).frozen_cache is None


def test_a_run_with_kept_activations_resumes_exactly(tiny_llama_chat_dir, tmp_path):
    torch.set_num_threads(1)  # the same float sums in both runs
    task = load_task("synthetic/count", num_examples=40)
    quick = dict(batch_size=8, max_new_tokens=4, num_samples=2, report_to="none", seed=0,
                 max_queries_per_iteration=8, eval_limit=8, epochs_per_iteration=2)  # fmt: skip

    def run(name, iterations, resume=False):
        policy = _policy(tiny_llama_chat_dir, lora_r=4)
        config = HIRConfig(output_dir=str(tmp_path / name), iterations=iterations,
                           resume=resume, **quick)  # fmt: skip
        HIRTrainer(policy, task, config).train()
        assert policy.frozen_cache.enabled and policy.frozen_cache.hits > 0

    run("whole", 2)
    run("split", 1)
    run("split", 2, resume=True)
    assert (tmp_path / "split" / "buffer.jsonl").read_text() == (tmp_path / "whole" / "buffer.jsonl").read_text()  # fmt: skip
    metrics = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
               for run in ("whole", "split")]  # fmt: skip
    assert [m["accuracy"] for m in metrics[0]] == [m["accuracy"] for m in metrics[1]]
    assert metrics[0][-1]["loss"] == metrics[1][-1]["loss"]
    record = json.loads((tmp_path / "whole" / "config.json").read_text())["config"]
    assert record["activation_cache_mb"] == 2048


def test_an_update_computes_what_its_loss_reads_before_its_epochs(tiny_llama_chat_dir, tmp_path):
    from hir.trainers.loop import TrainItem

    policy = _policy(tiny_llama_chat_dir, lora_r=4)
    task = load_task("synthetic/count", num_examples=20)
    config = HIRConfig(output_dir=str(tmp_path), report_to="none", sub_output_prob=0.0)
    trainer = HIRTrainer(policy, task, config)
    items = [TrainItem(e, task.correct_instruction, o)
             for e in task.examples[:4] for o in ("3", "4 things")]  # fmt: skip
    policy.precompute_frozen_layers(*trainer.training_pairs(items))
    cache = policy.frozen_cache
    computed = cache.misses
    assert computed == 2 * len(items)  # each output under both instructions
    cache.checked = {"flat", "shared"}
    trainer.loss(items)
    assert cache.misses == computed and cache.hits >= 2 * len(items)
