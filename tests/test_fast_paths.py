"""The fast paths give the results of the slow ones: the public code's loops (public_code)
and transformers' plain generate."""

import itertools

import pytest
import torch
from public_code import public_code_hir_step

from hir.losses import IGNORE_INDEX
from hir.models import load_policy
from hir.tasks import load_task
from hir.trainers.epochs import shuffled_order
from hir.trainers.hir import HIRConfig, HIRTrainer
from hir.trainers.loop import TrainItem


def _prompts(n=3):
    task = load_task("synthetic/sort", num_examples=20)
    return task, [task.prompt(e.query) for e in task.examples[:n]]


def test_shared_prompt_prefill_samples_the_same_tokens_as_plain_generate(tiny_gpt2_dir):
    policy = load_policy(tiny_gpt2_dir)
    _, prompts = _prompts()
    inputs = policy.pad_prompts(policy.format.prompt_ids(prompts))
    options = {
        "do_sample": True,
        "top_k": 0,
        "max_new_tokens": 5,
        "pad_token_id": 0,
        "eos_token_id": 1,
    }
    torch.manual_seed(7)
    plain = policy.model.generate(**inputs, num_return_sequences=4, **options)
    torch.manual_seed(7)
    shared = policy._generate_batch(inputs, 4, options)
    assert torch.equal(plain, shared)


def test_the_shared_prompt_prefill_computes_no_logits_of_prompt_positions(tiny_gpt2_dir):
    """The prefill is run for its KV cache only: the output layer sees one position per row
    (on a 49k vocabulary, every prompt position's logits came to 1.9 GB for 64 prompts)."""
    policy = load_policy(tiny_gpt2_dir)
    _, prompts = _prompts()
    inputs = policy.pad_prompts(policy.format.prompt_ids(prompts))
    positions = []
    policy.model.get_output_embeddings().register_forward_hook(
        lambda module, args, output: positions.append(args[0].shape[1])
    )
    options = {"do_sample": True, "max_new_tokens": 2, "pad_token_id": 0, "eos_token_id": 1}
    policy._generate_batch(inputs, 4, options)
    assert inputs["input_ids"].shape[1] > 2 and positions and max(positions) == 1


def test_greedy_decoding_in_segments_gives_one_calls_tokens(tiny_gpt2_dir, monkeypatch):
    """Rows that ended leave the batch between segments; the others continue from the cache,
    and every row's tokens up to its end are the ones a single `generate` call gives."""
    import hir.models.causal as causal

    policy = load_policy(tiny_gpt2_dir)
    prompts = [f"Sort: {words}" for words in ("b a c", "zz y", "q w e r t y", "x y", "m", "k j")]
    inputs = policy.pad_prompts(policy.format.prompt_ids(prompts))
    options = {"do_sample": False, "max_new_tokens": 30, "pad_token_id": 0}
    never = policy.model.config.vocab_size - 1
    plain = policy.model.generate(**inputs, **options, eos_token_id=never)
    plain = plain[:, inputs["input_ids"].shape[1] :].tolist()
    # End tokens that some rows reach after a few steps and others never: rows of every length.
    firsts: dict[int, dict[int, int]] = {}  # token: {row: its first step there}
    for number, row in enumerate(plain):
        for step, token in enumerate(row):
            firsts.setdefault(token, {}).setdefault(number, step)
    ends = [t for t, rows in firsts.items() if min(rows.values()) >= 2 and len(rows) < len(plain)]
    ends = ends[:3]
    ended_at = [min((r.index(t) for t in ends if t in r), default=None) for r in plain]
    assert any(step is not None for step in ended_at) and None in ended_at
    options["eos_token_id"] = ends
    whole = policy.model.generate(**inputs, **options)
    monkeypatch.setattr(causal, "SEGMENT_TOKENS", 4)
    calls = []
    generate = policy.model.generate
    monkeypatch.setattr(policy.model, "generate", lambda **kw: calls.append(len(kw["input_ids"])) or generate(**kw))  # fmt: skip
    segmented = policy._generate_batch(inputs, 1, options)
    width = inputs["input_ids"].shape[1]

    def until_end(row):
        tokens = row[width:].tolist()
        stop = min((tokens.index(t) for t in ends if t in tokens), default=len(tokens) - 1)
        return tokens[: stop + 1]

    assert [until_end(r) for r in segmented] == [until_end(r) for r in whole]
    assert calls[0] == len(prompts) and calls[-1] < len(prompts)  # ended rows left the batch
    assert len(calls) == 30 // 4 + 1
    # A cache whose rows cannot be dropped: one call, after the first segment, gives the tokens.
    from transformers.cache_utils import Cache

    monkeypatch.delattr(Cache, "batch_select_indices")
    calls.clear()
    assert torch.equal(policy._generate_batch(inputs, 1, options), whole)
    assert calls == [len(prompts), len(prompts)]


def test_grouped_greedy_decoding_equals_one_query_per_call(tiny_model_dir):
    policy = load_policy(tiny_model_dir)
    _, prompts = _prompts(6)
    grouped = policy.generate(prompts, max_new_tokens=5, batch_size=4)
    assert grouped == [policy.generate([p], max_new_tokens=5)[0] for p in prompts]


def _trainer(model_dir, tmp_path):
    config = HIRConfig(
        output_dir=str(tmp_path), report_to="none", sub_output_prob=0.0, device="cpu"
    )
    return HIRTrainer(model_dir, load_task("synthetic/sort", num_examples=20), config)


def _items(trainer):
    examples = trainer.train_examples[:4]
    correct, wrong = trainer.relabeler.correct_instruction, trainer.relabeler.wrong_instruction
    return [TrainItem(examples[0], correct, examples[0].target), TrainItem(examples[1], wrong, "kiwi"),
            TrainItem(examples[2], wrong, "apple fig"), TrainItem(examples[3], correct, examples[3].target)]  # fmt: skip


def test_batched_loss_equals_the_per_example_losses(tiny_model_dir, tmp_path):
    trainer = _trainer(tiny_model_dir, tmp_path)
    items = _items(trainer)
    _, batched = trainer.loss(items)
    singles = [trainer.loss([item])[1] for item in items]
    tokens = []
    for item in items:
        prompt = trainer.task.prompt(item.example.query, item.instruction)
        tokens.append(
            int((trainer.policy.encode([prompt], [item.output]).labels != IGNORE_INDEX).sum())
        )
    # The contrastive term is a mean over examples; CE and entropy are means over output tokens.
    assert batched["loss_contrastive"] == pytest.approx(
        sum(s["loss_contrastive"] for s in singles) / 4, rel=1e-5
    )
    for term in ("loss_sft", "entropy"):
        token_weighted = sum(s[term] * n for s, n in zip(singles, tokens)) / sum(tokens)
        assert batched[term] == pytest.approx(token_weighted, rel=1e-5)


def test_one_example_loss_equals_the_public_codes_step(tiny_model_dir, tmp_path):
    trainer = _trainer(tiny_model_dir, tmp_path)
    item = _items(trainer)[1]
    expected, _ = trainer.loss([item])
    opposite = trainer.relabeler.opposite(item.instruction)
    task, policy = trainer.task, trainer.policy
    optimizer = torch.optim.SGD(policy.model.parameters(), lr=0.0)  # measure, do not move
    reference = public_code_hir_step(
        policy, optimizer, task.prompt(item.example.query, item.instruction),
        task.prompt(item.example.query, opposite), item.output,
    )  # fmt: skip
    assert reference == pytest.approx(expected.item(), rel=1e-5)


def test_shared_prompt_logits_and_gradients_equal_one_pass_per_row(tiny_model_dir):
    """Rows that repeat a prompt (prompts of different lengths, outputs of different lengths):
    running each prompt once gives the logits and gradients of running every row in full."""
    policy = load_policy(tiny_model_dir)
    policy.model.eval()  # no dropout, so both paths see the same network
    _, prompts = _prompts(3)
    rows = [prompts[0], prompts[1], prompts[0], prompts[2], prompts[0], prompts[1]]
    outputs = ["apple", "kiwi banana cherry", "fig date", "plum", "apple kiwi", "x"]
    shared = policy.encode(rows, outputs, share_prompts=True)
    flat = policy.encode(rows, outputs)
    assert shared.shares_prompts and not flat.shares_prompts
    if policy.is_encoder_decoder:
        assert shared.prompt_inputs["input_ids"].shape[0] == 3
    else:  # the three prompts open alike: fewer blocks run than the rows hold
        blocks_run = sum(level.shape[0] for level in shared.prefix.levels)
        assert blocks_run < int((shared.prefix.of_row >= 0).sum()) / 2

    def scores_and_grads(batch):
        policy.model.zero_grad()
        logits, labels = policy.output_logits(batch)
        logp = torch.log_softmax(logits, -1)
        mask = labels != IGNORE_INDEX
        picked = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
        # Per-row sums of output log-probabilities and per-row entropies: layout-independent.
        per_row = torch.stack([picked.sum(-1), (-(logp.exp() * logp).sum(-1) * mask).sum(-1)])
        (per_row * torch.arange(1.0, 7.0)).sum().backward()
        grads = [p.grad.clone() for p in policy.model.parameters() if p.grad is not None]
        return per_row.detach(), grads

    shared_rows, shared_grads = scores_and_grads(shared)
    flat_rows, flat_grads = scores_and_grads(flat)
    assert torch.allclose(shared_rows, flat_rows, atol=1e-4)
    assert len(shared_grads) == len(flat_grads)
    for a, b in zip(shared_grads, flat_grads):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3)


def test_a_batch_that_shares_no_prompt_part_is_encoded_in_full(tiny_model_dir):
    policy = load_policy(tiny_model_dir)
    prompts = ["apple kiwi banana cherry fig date plum apple kiwi banana cherry fig date",
               "zebra lion tiger cat dog bird fish zebra lion tiger cat dog bird fish"]  # fmt: skip
    assert not policy.encode(prompts, ["a", "b"], share_prompts=True).shares_prompts


SCOPES = {"all weights": {}, "LoRA": {"lora_r": 4}, "last layer": {"train_last_layers": 1},
          "LoRA on the last layer": {"lora_r": 4, "train_last_layers": 1}}  # fmt: skip


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("form", ["pairwise", "in_batch"])
@pytest.mark.parametrize("fixture", ["tiny_llama_chat_dir", "tiny_gpt2_dir"])
def test_hir_loss_with_shared_prefixes_equals_the_ordinary_pass(fixture, form, scope, request,
                                                                monkeypatch, tmp_path):  # fmt: skip
    """HIR's whole loss (both instructions, sub-outputs cut at random words, the frozen-layer
    cache where the lower layers are frozen) and its gradients, with each shared prompt block
    run once, equal running every row in full."""
    from hir.models.adapters import TrainingScope

    policy = load_policy(request.getfixturevalue(fixture))
    policy.set_training_scope(TrainingScope(**SCOPES[scope]))
    policy.model.eval()
    task = load_task("synthetic/count", num_examples=20)
    config = HIRConfig(output_dir=str(tmp_path), report_to="none", sub_output_prob=0.5,
                       contrastive_form=form, device="cpu")  # fmt: skip
    trainer = HIRTrainer(policy, task, config)
    items = [TrainItem(e, instruction, output) for e in task.examples[:3]
             for instruction in (task.correct_instruction, task.wrong_instruction)
             for output in ("3 things and more", "4")]  # fmt: skip
    shared_passes = []
    original = type(policy)._run_shared_blocks
    monkeypatch.setattr(type(policy), "_run_shared_blocks",
                        lambda *a: shared_passes.append(1) or original(*a))  # fmt: skip

    def loss_and_grads(share: bool):
        import random

        monkeypatch.setattr("hir.models.policy.runs_unwrapped", lambda model: share)
        trainer.rng = random.Random(3)  # the same sub-output cuts
        loss, _ = trainer.loss(items)
        trainer.model.zero_grad()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in trainer.model.named_parameters()
                               if p.grad is not None}  # fmt: skip

    flat_loss, flat_grads = loss_and_grads(False)
    assert not shared_passes
    shared_loss, shared_grads = loss_and_grads(True)
    assert shared_passes
    torch.testing.assert_close(shared_loss, flat_loss, atol=1e-5, rtol=1e-5)
    assert shared_grads.keys() == flat_grads.keys() and flat_grads
    for name, grad in flat_grads.items():
        torch.testing.assert_close(shared_grads[name], grad, atol=1e-5, rtol=1e-3)


def test_grouped_order_keeps_each_querys_items_together_and_is_seeded():
    items = ["q1", "q2", "q1", "q3", "q2", "q1"]
    order = shuffled_order(items, torch.Generator().manual_seed(0), group_of=lambda item: item)
    assert sorted(order) == list(range(6))
    assert len([key for key, _ in itertools.groupby(items[i] for i in order)]) == 3
    assert [i for i in order if items[i] == "q1"] == [0, 2, 5]
    assert order == shuffled_order(items, torch.Generator().manual_seed(0), lambda item: item)


def test_no_prefix_sharing_past_a_sliding_window(tiny_llama_chat_dir):
    """A sliding-window cache drops the positions before its window, which the rows would have
    to read: past it, the batch is encoded in full."""
    policy = load_policy(tiny_llama_chat_dir)
    query = "Count: " + " ".join("abcdefghijklmnopqrstuvwxyz")
    prompts = [f"{query} Give a {kind} answer." for kind in ("correct", "wrong")]
    assert policy.encode(prompts, ["1", "2"], share_prompts=True).shares_prompts
    policy.model.config.sliding_window = 8
    assert not policy.encode(prompts, ["1", "2"], share_prompts=True).shares_prompts
