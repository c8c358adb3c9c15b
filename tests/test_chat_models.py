"""Chat templates, answer extraction and LoRA, on a tiny Llama-architecture chat model built
from a config (ChatML template, `<|im_end|>` ending each turn, `</s>` its EOS)."""

import json

import pytest
import torch

from hir import HIRError
from hir.arguments import ModelArguments
from hir.cli import main
from hir.losses import IGNORE_INDEX
from hir.models import load_policy
from hir.models.adapters import TrainingScope
from hir.runs.checkpoint import manifest
from hir.tasks import Example, load_task
from hir.tasks.extraction import first_number, make_extractor, option_letter
from hir.trainers.hir import HIRConfig, HIRTrainer
from hir.trainers.ppo import PPOConfig, PPOTrainer

TASK = load_task("synthetic/count", num_examples=40)
QUICK = dict(iterations=1, batch_size=8, max_new_tokens=4, num_samples=2, report_to="none",
             seed=0, max_queries_per_iteration=8, eval_limit=8)  # fmt: skip
LORA = TrainingScope(lora_r=4, lora_alpha=8.0, lora_target_modules="q_proj,v_proj")


def chat_policy(folder, **kwargs):
    return load_policy(folder, prompt_format="chat", **kwargs)


def test_the_prompt_is_the_user_turn_and_the_assistant_turn_is_opened(tiny_llama_chat_dir):
    policy = chat_policy(tiny_llama_chat_dir)
    assert policy.chat and policy.format.completion_prefix == ""
    (text,) = policy.format.render_prompts(["Count: a b"])
    assert text == "<|im_start|>user\nCount: a b<|im_end|>\n<|im_start|>assistant\n"
    (ids,) = policy.format.prompt_ids(["Count: a b"])
    assert policy.tokenizer.decode(ids) == text
    # The task's own prompt goes in the user turn with the chat layout (question first).
    chat_task = TASK.for_format(chat=True)
    example = chat_task.split("train")[0]
    hint = "Answer with a number only."  # synthetic/count's hint for chat models
    assert (
        chat_task.prompt(example.query) == f"{example.query}\n\n{TASK.correct_instruction} {hint}"
    )
    assert TASK.for_format(chat=False).prompt(example.query).endswith("\nA:")
    assert chat_task.for_format(chat=True) is chat_task


def test_only_the_assistant_output_and_its_end_of_turn_carry_loss(tiny_llama_chat_dir):
    policy = chat_policy(tiny_llama_chat_dir)
    end = policy.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert policy.format.end_token_id == end != policy.tokenizer.eos_token_id
    batch = policy.encode(["Count: a b", "Count: a b c d"], ["2", "4 items"])
    for row, output in enumerate(["2", "4 items"]):
        labelled = [t for t in batch.labels[row].tolist() if t != IGNORE_INDEX]
        expected = policy.tokenizer(output, add_special_tokens=False)["input_ids"] + [end]
        assert labelled == expected
        # Every template and prompt token is masked out.
        prompt_len = len(policy.format.prompt_ids([["Count: a b", "Count: a b c d"][row]])[0])
        assert int((batch.labels[row] != IGNORE_INDEX).sum()) == len(expected)
        assert prompt_len > 0
    # Shared-prompt encoding gives the same logits under the template.
    prompts, outputs = ["Count: a b"] * 3, ["2", "two", "3"]
    flat = policy.output_logits(policy.encode(prompts, outputs))
    shared = policy.output_logits(policy.encode(prompts, outputs, share_prompts=True))
    for (lf, yf), (ls, ys) in [(flat, shared)]:
        for row in range(3):
            a = lf[row][yf[row] != IGNORE_INDEX]
            b = ls[row][ys[row] != IGNORE_INDEX]
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def _force_next_token(policy, token_id: int) -> None:
    """Make the model predict `token_id` at every position."""
    model = policy.model
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    torch.nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.zero_()
        head.bias[token_id] = 10.0
    model.lm_head = head


def test_generation_stops_at_the_end_of_turn_token(tiny_llama_chat_dir):
    chat = chat_policy(tiny_llama_chat_dir)
    end = chat.format.end_token_id
    _force_next_token(chat, end)
    ((output, token_ids),) = chat.generate(["Count: a"], max_new_tokens=6, return_token_ids=True)[0]
    assert output == "" and token_ids == (end,)
    # Read as a plain model, <|im_end|> is just a token: generation runs to max_new_tokens.
    plain = load_policy(tiny_llama_chat_dir, prompt_format="plain")
    _force_next_token(plain, end)
    ((_, token_ids),) = plain.generate(["Count: a"], max_new_tokens=6, return_token_ids=True)[0]
    assert token_ids == (end,) * 6


@pytest.mark.parametrize(
    "output, answer",
    [("The correct answer is (C).", "(C)"), ("Answer: B", "(B)"), ("B) red", "(B)"),
     ("It is the blue ball.", "(C)"), ("I am not sure.", "I am not sure.")],
)  # fmt: skip
def test_option_letter_extraction(output, answer):
    example = Example("0", "q", "(C)", meta={"options": ("red ball.", "green ball.", "blue ball.")})
    assert option_letter(output, example) == answer


@pytest.mark.parametrize(
    "output, answer",
    [("You have 3 instruments.", "3"), ("three", "3"), ("I count 2 cats and 1 dog, so the "
     "answer is 3.", "3"), ("Twelve.", "12"), ("none", "none")],
)  # fmt: skip
def test_number_extraction(output, answer):
    assert first_number(output, Example("0", "q", "3")) == answer


def test_regex_callable_and_first_line_extraction(tmp_path):
    example = Example("0", "q", "x")
    assert make_extractor(r"regex:is (\w+)")("it is apple pie", example) == "apple"
    assert make_extractor("regex:[0-9]+")("a 42 b", example) == "42"
    assert make_extractor("first_line")("\n  yes \nno", example) == "yes"
    (tmp_path / "mine.py").write_text(
        "def last_word(output, example):\n    return output.split()[-1]\n"
    )
    assert make_extractor(f"{tmp_path / 'mine.py'}:last_word")("a b c", example) == "c"
    with pytest.raises(HIRError, match="does not compile"):
        load_task("synthetic/count", num_examples=10, extract="regex:(unclosed")
    with pytest.raises(HIRError, match="unknown answer extraction"):
        load_task("synthetic/count", num_examples=10, extract="bogus")


def test_extraction_runs_before_feedback_and_the_raw_output_is_kept(bigbench_dir):
    task = load_task("bigbench/tracking_shuffled_objects_three_objects", bigbench_dir=bigbench_dir)
    plain, chat = task.for_format(chat=False), task.for_format(chat=True)
    example = task.split("test")[0] if task.split("test") else task.examples[0]
    sentence = f"The answer is {example.target}."
    assert plain.score(sentence, example) == 0.0  # the paper's exact match stays exact
    assert chat.score(sentence, example) == 1.0
    assert chat.prompt(example.query).endswith("Answer with the option letter only.")
    assert "Answer with" not in plain.prompt(example.query)


def test_hir_on_a_chat_model_keeps_raw_and_extracted_answers(tiny_llama_chat_dir, tmp_path):
    """Both contrastive forms and sub-output train under the template; the buffer keeps the
    raw output (trained on) and the answer (scored)."""
    task = load_task("synthetic/count", num_examples=40, extract="regex:[0-9]+")
    for form in ("pairwise", "in_batch"):
        config = HIRConfig(output_dir=str(tmp_path / form), contrastive_form=form,
                           sub_output_prob=1.0, **QUICK)  # fmt: skip
        trainer = HIRTrainer(chat_policy(tiny_llama_chat_dir), task, config)
        summary = trainer.train()
        assert summary["iterations"] == 1
        record = json.loads((tmp_path / form / "buffer.jsonl").read_text().splitlines()[0])
        assert "answer" in record and "output" in record
        metrics = json.loads((tmp_path / form / "metrics.jsonl").read_text().splitlines()[-1])
        assert torch.isfinite(torch.tensor(metrics["loss"]))


def test_prompt_format_chat_needs_a_template(tiny_gpt2_dir):
    with pytest.raises(HIRError, match="needs a tokenizer with a chat template"):
        load_policy(tiny_gpt2_dir, prompt_format="chat")
    assert not load_policy(tiny_gpt2_dir).chat  # auto: plain without a template


def test_lora_targets_that_match_nothing_are_refused(tiny_llama_chat_dir):
    arguments = ModelArguments(model=tiny_llama_chat_dir, lora_r=4, lora_target_modules="c_attn")
    with pytest.raises(HIRError, match="matches no layer of this model.*q_proj"):
        arguments.load_policy()


def test_last_k_layers_train_and_the_rest_stays_frozen(tiny_llama_chat_dir, tmp_path):
    policy = chat_policy(tiny_llama_chat_dir).set_training_scope(TrainingScope(train_last_layers=1))
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
    trainable = {n for n, p in policy.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("model.layers.1.", "model.norm")) for n in trainable)
    HIRTrainer(policy, TASK, HIRConfig(output_dir=str(tmp_path), **QUICK)).train()
    changed = {n for n, p in policy.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= trainable


def _lora_run(folder, output_dir, iterations, resume=False):
    policy = chat_policy(folder).set_training_scope(LORA)
    config = HIRConfig(output_dir=str(output_dir), **{**QUICK, "iterations": iterations},
                       resume=resume)  # fmt: skip
    HIRTrainer(policy, TASK, config).train()
    return policy


def _visible_adapter_run(folder, output_dir):
    """A one-iteration LoRA run whose checkpoint holds an adapter that changes the outputs
    (B is zero-initialized, so a short run may leave it near the identity: move it)."""
    policy = _lora_run(folder, output_dir, 1)
    with torch.no_grad():
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    checkpoint = output_dir / "checkpoints" / "iteration-0001"
    policy.model.save_pretrained(checkpoint)
    # ... and record it in the checkpoint's manifest, as a run that trained it would have.
    (checkpoint / "COMPLETE.json").unlink()
    (checkpoint / "COMPLETE.json").write_text(
        json.dumps({"iteration": 1, "files": manifest(checkpoint)})
    )
    return policy


def test_lora_trains_the_adapter_only_and_resumes_exactly(tiny_llama_chat_dir, tmp_path):
    torch.set_num_threads(1)  # the same float sums in both runs
    whole = _lora_run(tiny_llama_chat_dir, tmp_path / "whole", 2)
    checkpoint = tmp_path / "whole" / "checkpoints" / "iteration-0002"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    assert not (checkpoint / "model.safetensors").exists()
    base = load_policy(tiny_llama_chat_dir).model.state_dict()
    for name, tensor in whole.model.get_base_model().state_dict().items():
        if "lora_" not in name:
            assert torch.equal(tensor, base[name.replace(".base_layer", "")]), name
    _lora_run(tiny_llama_chat_dir, tmp_path / "split", 1)
    _lora_run(tiny_llama_chat_dir, tmp_path / "split", 2, resume=True)
    for name in ("buffer.jsonl",):
        assert (tmp_path / "split" / name).read_text() == (tmp_path / "whole" / name).read_text()
    accuracies = [
        [json.loads(line)["accuracy"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for run in ("whole", "split")
    ]  # fmt: skip
    assert accuracies[0] == accuracies[1]


def test_the_seed_decides_the_adapters_initial_weights(tiny_llama_chat_dir, tmp_path):
    def initial_adapter(seed):
        policy = chat_policy(tiny_llama_chat_dir).set_training_scope(LORA)
        HIRTrainer(policy, TASK, HIRConfig(output_dir=str(tmp_path / str(seed)), **{**QUICK, "seed": seed}))  # fmt: skip
        return {n: p.clone() for n, p in policy.model.named_parameters() if "lora_A" in n}

    first, again, other = initial_adapter(0), initial_adapter(0), initial_adapter(1)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not any(torch.equal(first[n], other[n]) for n in first)


def test_merged_export_is_an_ordinary_model_with_the_adapters_outputs(
    tiny_llama_chat_dir, tmp_path
):
    from transformers import AutoModelForCausalLM

    policy = _visible_adapter_run(tiny_llama_chat_dir, tmp_path / "run")
    assert (
        main(["export", str(tmp_path / "run"), "--output_dir", str(tmp_path / "merged"), "--merge"])
        == 0
    )
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert not any("lora" in n for n, _ in merged.named_parameters())
    batch = policy.encode(["Count: a b"], ["2"])
    expected, _ = policy.output_logits(batch)
    policy.model = merged
    actual, _ = policy.output_logits(batch)
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)
    assert main(["export", str(tmp_path / "run"), "--output_dir", str(tmp_path / "merged")]) == 2


def test_ppo_with_lora_uses_the_adapter_off_as_its_reference(tiny_llama_chat_dir, tmp_path):
    policy = chat_policy(tiny_llama_chat_dir).set_training_scope(LORA)
    config = PPOConfig(output_dir=str(tmp_path), **QUICK)
    trainer = PPOTrainer(policy, TASK, config)
    assert trainer.reference is None
    trainer.train()
    metrics = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    # The adapter starts as the identity (B = 0): the first rollout's KL to the reference is 0.
    assert metrics["kl"] == pytest.approx(0.0, abs=1e-6)


def test_hir_eval_of_a_lora_run_equals_eval_of_its_merged_export(tiny_llama_chat_dir, tmp_path):
    _visible_adapter_run(tiny_llama_chat_dir, tmp_path / "run")
    assert main(["export", str(tmp_path / "run"), "--output_dir", str(tmp_path / "merged"), "--merge"]) == 0  # fmt: skip
    common = ["--task", "synthetic/count", "--num_examples", "40", "--max_new_tokens", "4",
              "--prompt_format", "chat"]  # fmt: skip
    lora = ["--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "q_proj,v_proj"]
    runs = {
        "merged": ["--model", str(tmp_path / "merged")],
        "run": ["--model", tiny_llama_chat_dir, *lora, "--run", str(tmp_path / "run")],
        "base": ["--model", tiny_llama_chat_dir],
    }
    for name, args in runs.items():
        assert main(["eval", *common, *args, "--output_dir", str(tmp_path / f"eval-{name}")]) == 0

    def predictions(name):
        lines = (tmp_path / f"eval-{name}" / "predictions.jsonl").read_text().splitlines()
        return [json.loads(line)["prediction"] for line in lines]

    assert predictions("run") == predictions("merged")
    assert predictions("run") != predictions("base")  # the adapter was loaded, not ignored


def test_hir_eval_of_a_lora_run_without_the_lora_settings_says_what_to_add(
    tiny_llama_chat_dir, tmp_path, capsys
):
    _lora_run(tiny_llama_chat_dir, tmp_path / "run", 1)
    args = ["eval", "--model", tiny_llama_chat_dir, "--task", "synthetic/count", "--run", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 2
    assert "holds a LoRA adapter" in capsys.readouterr().err
