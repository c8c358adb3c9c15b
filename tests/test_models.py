import pytest
import torch

from hir import HIRError
from hir.losses import IGNORE_INDEX
from hir.models import load_policy
from hir.models.causal import CausalPolicy
from hir.models.seq2seq import Seq2SeqPolicy
from hir.models.small_models import build_model, train_tokenizer

PROMPTS = [
    "Solve the question with correct answer.\n\nQ: How many times does fox appear? List: fox\nA:",
    "Q: x\nA:",
]
OUTPUTS = ["1", "apple kiwi pear"]


def test_local_folders_load_back_as_the_right_policy(tiny_gpt2_dir, tiny_t5_dir):
    assert isinstance(load_policy(tiny_gpt2_dir), CausalPolicy)
    assert isinstance(load_policy(tiny_t5_dir), Seq2SeqPolicy)


def test_missing_model_paths_are_one_line_errors(tmp_path):
    with pytest.raises(HIRError, match="does not exist"):
        load_policy(str(tmp_path / "no-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(HIRError, match="cannot load model") as info:
        load_policy(str(tmp_path / "empty"))
    assert "\n" not in str(info.value)


def test_tokenizer_round_trips_any_text():
    tokenizer = train_tokenizer(["apple pear kiwi", "How many times?"] * 20, vocab_size=300)
    for text in ["apple pear kiwi", "Zebra! ünïcode 123\n(B)"]:
        assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    # Words seen in training become single tokens; unseen ones fall back to bytes.
    assert len(tokenizer("apple")["input_ids"]) == 1


def _per_token_logprobs(policy, prompts, outputs):
    batch = policy.encode(prompts, outputs).to(policy.device)
    logits, labels = policy.output_logits(batch)
    mask = labels != IGNORE_INDEX
    logprobs = (
        torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    )
    return [row[m].tolist() for row, m in zip(logprobs, mask)]


def test_batched_scoring_equals_one_at_a_time(tiny_model_dir):
    policy = load_policy(tiny_model_dir)
    batched = _per_token_logprobs(policy, PROMPTS, OUTPUTS)
    for i in range(len(PROMPTS)):
        (single,) = _per_token_logprobs(policy, PROMPTS[i : i + 1], OUTPUTS[i : i + 1])
        assert single == pytest.approx(batched[i], abs=1e-5)


def test_labels_hold_exactly_the_output_tokens_and_eos(tiny_model_dir):
    policy = load_policy(tiny_model_dir)
    batch = policy.encode(PROMPTS, OUTPUTS)
    for row, output in zip(batch.labels, OUTPUTS):
        ids = row[row != IGNORE_INDEX].tolist()
        assert ids[-1] == policy.tokenizer.eos_token_id
        assert policy.tokenizer.decode(ids[:-1]).strip() == output


def test_causal_logits_are_aligned_with_the_next_token(tiny_gpt2_dir):
    policy = load_policy(tiny_gpt2_dir)
    batch = policy.encode(PROMPTS, OUTPUTS)
    logits, labels = policy.output_logits(batch)
    full = policy.model(**batch.inputs).logits  # every position
    for row in range(len(PROMPTS)):
        positions = (batch.labels[row] != IGNORE_INDEX).nonzero().flatten().tolist()
        kept = (labels[row] != IGNORE_INDEX).nonzero().flatten().tolist()
        assert len(kept) == len(positions)
        for k, p in zip(kept, positions):
            # The logit that predicts output token p sits at position p - 1.
            assert torch.allclose(logits[row, k], full[row, p - 1], atol=1e-5)
            assert labels[row, k] == batch.labels[row, p]
    # Only the output positions' logits are computed, not the prompt's.
    assert logits.shape[1] < batch.labels.shape[1] // 4


def test_generate_returns_n_samples_per_prompt_in_input_order(tiny_model_dir):
    policy = load_policy(tiny_model_dir)
    prompts = [
        PROMPTS[0],
        "Q: a much longer prompt with many more words in it than the first\nA:",
        PROMPTS[1],
    ]
    greedy_batched = policy.generate(prompts, max_new_tokens=4, batch_size=8)
    greedy_single = [policy.generate([p], max_new_tokens=4)[0] for p in prompts]
    assert greedy_batched == greedy_single
    torch.manual_seed(0)
    sampled = policy.generate(prompts, num_samples=3, do_sample=True, max_new_tokens=4)
    assert [len(s) for s in sampled] == [3, 3, 3]
    with pytest.raises(HIRError, match="needs do_sample"):
        policy.generate(prompts, num_samples=2)


def test_sampled_token_ids_decode_to_the_text_and_stop_at_eos(tiny_model_dir):
    policy = load_policy(tiny_model_dir)
    eos = policy.tokenizer.eos_token_id
    torch.manual_seed(0)
    sampled = policy.generate(
        PROMPTS, num_samples=3, do_sample=True, max_new_tokens=6, return_token_ids=True
    )
    for outputs in sampled:
        for text, ids in outputs:
            assert policy.format.decode(torch.tensor([ids]))[0] == text
            assert eos not in ids[:-1] and (ids[-1] == eos or len(ids) == 6)
    # Encoding from ids takes them as they are: the labels are exactly the sampled tokens.
    ids = [ids for _, ids in sampled[0]]
    batch = policy.encode_ids(policy.format.prompt_ids(PROMPTS[:1] * 3), ids)
    for row, expected in zip(batch.labels.tolist(), ids):
        assert [t for t in row if t != IGNORE_INDEX] == list(expected)


def test_build_model_rejects_unknown_choices():
    tokenizer = train_tokenizer(["a b c"], vocab_size=280)
    with pytest.raises(HIRError, match="unknown architecture"):
        build_model("lstm", tokenizer)
    with pytest.raises(HIRError, match="unknown size"):
        build_model("gpt2", tokenizer, size="huge")
