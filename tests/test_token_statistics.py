"""The output layer fused with the loss's statistics gives the numbers and gradients of the
ordinary path (output layer, log-softmax, autograd), on tensors and on the policies."""

import pytest
import torch

import hir.losses.statistics as statistics_module
from hir.losses import (
    IGNORE_INDEX,
    label_smoothed_nll,
    mean_entropy,
    output_layer_statistics,
    sequence_scores,
    token_statistics,
)
from hir.models import load_policy
from hir.models.adapters import TrainingScope
from hir.models.speed.output_layer import fusable_output_layer

FIELDS = ("logprob", "entropy", "mean_logprob")


def _loss(statistics):
    """Every statistic, weighted unevenly per row, and a nonlinear sequence-level term."""
    return (
        label_smoothed_nll(statistics, 0.3)
        - 0.7 * mean_entropy(statistics)
        + (sequence_scores(statistics) ** 2 * torch.arange(1.0, 1 + len(statistics.mask))).sum()
    )


@pytest.mark.parametrize("bias", [False, True])
def test_fused_statistics_and_gradients_equal_autograd_through_the_logits(bias, monkeypatch):
    # Chunks smaller than the rows, so that their boundaries fall inside the batch.
    monkeypatch.setattr(statistics_module, "ELEMENTWISE_ROWS", 3)
    monkeypatch.setattr(statistics_module, "MATMUL_ROWS", 7)
    torch.manual_seed(0)
    hidden = torch.randn(3, 9, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 6, dtype=torch.float64, requires_grad=True)
    bias_ = torch.randn(11, dtype=torch.float64, requires_grad=True) if bias else None
    labels = torch.randint(0, 11, (3, 9))
    labels[0, :4] = IGNORE_INDEX
    labels[2, 6:] = IGNORE_INDEX
    inputs = [hidden, weight] + ([bias_] if bias else [])

    reference = token_statistics(torch.nn.functional.linear(hidden, weight, bias_), labels)
    fused = output_layer_statistics(hidden, weight, bias_, labels)
    for field in FIELDS:
        torch.testing.assert_close(getattr(fused, field), getattr(reference, field))
    assert torch.equal(fused.mask, reference.mask)
    expected = torch.autograd.grad(_loss(reference), inputs)
    got = torch.autograd.grad(_loss(fused), inputs)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # No gradient reaches a position that is not an output token.
    assert torch.all(got[0][labels == IGNORE_INDEX] == 0)


@pytest.mark.parametrize("bias", [False, True])
def test_fused_statistics_under_bf16_autocast_train_as_the_logits_path(bias):
    """Under mixed precision (bf16 autocast, as accelerate runs it on a GPU) the fused layer's
    backward computes in bf16, as autograd does through the logits, and returns each gradient
    in its input's dtype (float32 weights), close to the ordinary path's."""
    torch.manual_seed(0)
    hidden = torch.randn(3, 9, 16, requires_grad=True)
    weight = torch.randn(50, 16, requires_grad=True)
    bias_ = torch.randn(50, requires_grad=True) if bias else None
    labels = torch.randint(0, 50, (3, 9))
    labels[0, :4] = IGNORE_INDEX
    inputs = [hidden, weight] + ([bias_] if bias else [])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = token_statistics(torch.nn.functional.linear(hidden, weight, bias_), labels)
        fused = output_layer_statistics(hidden, weight, bias_, labels)
    expected = torch.autograd.grad(_loss(reference), inputs)
    got = torch.autograd.grad(_loss(fused), inputs)
    for a, b, tensor in zip(got, expected, inputs):
        assert a.dtype == tensor.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2 * b.abs().max().item())


SCOPES = {"all weights": {}, "LoRA": {"lora_r": 4}, "last layer": {"train_last_layers": 1}}


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("fixture", ["tiny_llama_chat_dir", "tiny_gpt2_dir", "tiny_t5_dir"])
def test_policy_statistics_through_the_fused_output_layer_equal_the_logits_path(
    fixture, scope, request, monkeypatch
):
    policy = load_policy(request.getfixturevalue(fixture))
    policy.set_training_scope(TrainingScope(**SCOPES[scope]))
    policy.model.eval()  # no dropout: both paths see the same network
    prompts = ["Count: a b", "Count: a b", "Count: x y z"]
    outputs = ["2", "two things", "3"]
    assert policy.output_layers.for_model(policy.model) is not None

    def loss_and_grads(fused: bool):
        if not fused:
            monkeypatch.setattr(policy.output_layers, "for_model", lambda model: None)
        statistics = policy.statistics_for(prompts, outputs)
        loss = _loss(statistics)
        policy.model.zero_grad()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in policy.model.named_parameters()
                 if p.grad is not None}  # fmt: skip
        return statistics, grads

    fused, fused_grads = loss_and_grads(True)
    ordinary, ordinary_grads = loss_and_grads(False)
    for field in FIELDS:
        torch.testing.assert_close(getattr(fused, field), getattr(ordinary, field),
                                   atol=1e-5, rtol=1e-5)  # fmt: skip
    assert fused_grads.keys() == ordinary_grads.keys() and fused_grads
    for name, grad in ordinary_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, atol=1e-5, rtol=1e-3)


def test_a_model_that_transforms_its_logits_keeps_the_ordinary_path(tiny_llama_chat_dir):
    """Logits capped after the output layer (Gemma 2's soft-capping) are not what the output
    layer gives: the check finds it, and the statistics are those of the model's own logits."""
    policy = load_policy(tiny_llama_chat_dir)
    model = policy.model
    forward = model.forward

    def capped(*args, **kwargs):
        output = forward(*args, **kwargs)
        output.logits = 4.0 * torch.tanh(output.logits / 4.0)
        return output

    model.forward = capped
    assert fusable_output_layer(model) is None
    batch = policy.encode(["Count: a b"], ["2"])
    expected = token_statistics(*policy.output_logits(batch))
    got = policy.output_statistics(batch)
    torch.testing.assert_close(got.logprob, expected.logprob)
