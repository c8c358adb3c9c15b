"""What `hir compare` compares: the methods by name, each method's config from one mapping of
settings, the seeds, and the start's rows (one per instruction the methods evaluate under).

Methods: "start" (the untouched starting policy), "hir", "farl", "sft", "ppo", "ppo-ptx" (PPO
plus gamma = 27.8 times the log-likelihood of the warm-up data, as InstructGPT), "grpo", "rloo",
"nft", "nsr", "w-reinforce" (NSR with the right samples weighted 0.1), HIR ablations
"hir-no-contrastive", "hir-no-entropy", "hir-no-sub-output", "hir-no-label-smoothing", variants
"hir-sum-scores", "hir-balanced", "hir-contrast-first", "hir-constraints" (hindsight constraint
relabeling), and the InstructGPT pipeline ending in
each method against the same SFT model and reward model: "instructgpt-ppo-ptx",
"instructgpt-hir", "instructgpt-farl". Any of them takes settings of its own after "+":
"hir+contrastive_weight=10+balance_instructions=true". Each run lives in
OUTPUT_DIR/METHOD/seed-N (`hir.runs.folders.run_folder`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from hir.errors import HIRError
from hir.recipes.instructgpt import FINAL_METHODS
from hir.tasks.base import Task
from hir.trainers import get_method
from hir.trainers.run_config import RunConfig

# A compared method: a registered method, with config overrides for variants and ablations.
METHODS: dict[str, tuple[str, dict]] = {
    "hir": ("hir", {}),
    "farl": ("farl", {}),
    "sft": ("sft", {}),
    # What makes PPO and PPO-ptx, as the pipeline's final methods define them: PPO is without
    # the ptx term whatever the shared settings say (a YAML's ptx_coef is PPO-ptx's).
    "ppo": FINAL_METHODS["ppo"],
    "ppo-ptx": FINAL_METHODS["ppo-ptx"],
    "grpo": ("grpo", {}),
    "rloo": ("rloo", {}),
    "nft": ("nft", {}),
    "nsr": ("nsr", {}),
    # Zhu et al.'s W-REINFORCE: NSR with the right samples weighted 0.1.
    "w-reinforce": ("nsr", {"positive_weight": 0.1}),
    "hir-no-contrastive": ("hir", {"contrastive_weight": 0.0}),
    "hir-no-entropy": ("hir", {"entropy_weight": 0.0}),
    "hir-no-sub-output": ("hir", {"sub_output_prob": 0.0}),
    "hir-no-label-smoothing": ("hir", {"label_smoothing": 0.0}),
    # For tuning the baselines' smoothing on the same budget as HIR's.
    "farl-no-label-smoothing": ("farl", {"label_smoothing": 0.0}),
    "sft-no-label-smoothing": ("sft", {"label_smoothing": 0.0}),
    # HIR with more of the update on its contrastive term (one option each).
    "hir-sum-scores": ("hir", {"contrastive_score": "sum"}),
    "hir-balanced": ("hir", {"balance_instructions": True}),
    # Hindsight constraint relabeling (--task constraints; docs/method.md section 5).
    "hir-constraints": ("hir", {"relabel": "constraints", "sub_output_prob": 0.0}),
    "hir-contrast-first": ("hir", {"contrast_first_epochs": 1}),
    # Each distinct answer's items weigh the same within an instruction (against learning the
    # answer most of the right samples give).
    "hir-answer-balanced": ("hir", {"balance_answers": True}),
    "farl-answer-balanced": ("farl", {"balance_answers": True}),
    # The InstructGPT pipeline (SFT -> reward model -> the method against the reward model),
    # one SFT model and reward model per seed for all three (hir.recipes.instructgpt).
    **{f"instructgpt-{name}": method for name, method in FINAL_METHODS.items()},
}
# Any of the above with settings of its own: "hir+contrastive_weight=10+balance_instructions=true".
VARIANT_SEPARATOR = "+"


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m != "start" and variant_base(m) not in METHODS]
    if unknown or not methods:
        raise HIRError(
            f"unknown method(s) {', '.join(unknown) or '(none)'}: choose from start, {', '.join(METHODS)}"
            f" (with settings of its own: METHOD{VARIANT_SEPARATOR}field=value)"
        )
    for method in methods:
        if method != "start":
            method_variant(method)  # a bad setting fails here, before any run
    repeated = sorted({m for m in methods if methods.count(m) > 1})
    if repeated:
        raise HIRError(
            f"--methods names {', '.join(repeated)} more than once: name each method once"
        )
    return methods


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(seed) for seed in text.split(",") if seed.strip()]
    except ValueError as exc:
        raise HIRError(f"--seeds must be comma-separated integers, got {text!r}") from exc
    if not seeds:
        raise HIRError("--seeds names no seed")
    outside = [seed for seed in seeds if not 0 <= seed < 2**32]
    if outside:  # refused now, not after the runs of the seeds before it
        raise HIRError(
            f"--seeds {outside[0]} is outside [0, 2**32) (numpy's range): choose another"
        )
    if len(set(seeds)) < len(seeds):
        raise HIRError(
            f"--seeds {text} repeats a seed: a repeated run would count twice in the mean"
        )
    return seeds


def variant_base(method: str) -> str:
    """ "hir-balanced+contrastive_weight=10" -> "hir-balanced"."""
    return method.split(VARIANT_SEPARATOR, 1)[0]


def method_variant(method: str) -> tuple[str, dict[str, Any]]:
    """(registered method, config overrides) of a compared method: a name of `METHODS`,
    optionally followed by its own settings, each `+field=value` (values read as the field's
    flag would read them)."""
    from hir.options import OptionParser

    base, *settings = method.split(VARIANT_SEPARATOR)
    registered, overrides = METHODS[base]
    if not settings:
        return registered, overrides
    pairs = [setting.partition("=") for setting in settings]
    if any(not name or not equals for name, equals, _ in pairs):
        raise HIRError(
            f"method {method!r}: each setting after {VARIANT_SEPARATOR!r} must be field=value, "
            f"e.g. hir{VARIANT_SEPARATOR}contrastive_weight=10"
        )
    config_class = get_method(registered)[1]
    parser = OptionParser([config_class], prog=f"hir compare (method {method})")
    (parsed,) = parser.parse([part for name, _, value in pairs for part in (f"--{name}", value)])
    names = [name.replace("-", "_") for name, _, _ in pairs]
    return registered, {**overrides, **{name: getattr(parsed, name) for name in names}}


def config_class_of(method: str) -> type[RunConfig]:
    """The config a compared method is set by: its registered method's (`RunConfig` for the
    untrained start, which is only evaluated)."""
    return RunConfig if method == "start" else get_method(method_variant(method)[0])[1]


def compare_configs(methods: Sequence[str], settings: Mapping[str, Any]) -> dict[str, RunConfig]:
    """Each method's config: the `settings` its config declares, then its variant's overrides
    (e.g. ppo-ptx's ptx_coef), its own defaults for the rest. A setting that no method
    declares (a typo) is refused."""
    declared = {f.name for m in ("start", *METHODS) for f in fields(config_class_of(m))}
    unknown = sorted(set(settings) - declared)
    if unknown:
        raise HIRError(f"no method has the setting(s) {', '.join(unknown)}")
    configs = {}
    for method in methods:
        config_class = config_class_of(method)
        own = {f.name for f in fields(config_class)}
        given = config_class(**{k: v for k, v in settings.items() if k in own})
        configs[method] = as_variant(method, given)
    require_one_sampling_budget(configs, explicit="num_samples" in settings)
    return configs


def require_one_sampling_budget(configs: Mapping[str, RunConfig], explicit: bool) -> None:
    """Refuse methods that would sample different numbers of outputs per query by their own
    defaults (HIR 4 as the paper, GRPO 8 and RLOO 2 as TRL, NFT 16 as its reference) when
    `num_samples` was not given (`explicit`): a comparison is at the same sampling budget. A
    variant's own setting (grpo+num_samples=8) is the user's choice and stands."""
    if explicit:
        return
    defaults = {m: c.num_samples for m, c in configs.items()
                if hasattr(c, "num_samples") and "num_samples" not in method_variant(m)[1]}  # fmt: skip
    if len(set(defaults.values())) > 1:
        listed = ", ".join(f"{m} {n}" for m, n in defaults.items())
        raise HIRError(
            f"the compared methods sample different numbers of outputs per query by default "
            f"({listed}): set --num_samples, so that each draws the same budget"
        )


def as_variant(method: str, config: RunConfig) -> RunConfig:
    """`config` with what defines the compared method applied (e.g. ppo-ptx's ptx_coef)."""
    return config if method == "start" else dataclasses.replace(config, **method_variant(method)[1])


def start_rows(configs: Mapping[str, RunConfig], task: Task) -> list[tuple[str, str]]:
    """(row name, instruction) of the start's rows: one per instruction that the compared
    methods evaluate under (HIR with quantile relabeling asks for its top bucket, FARL for a
    correct answer), so that each method's iteration 0 equals the start row under its
    instruction. "start" is the correct-answer instruction's row (or the only one); another is
    "start@METHOD", after the first method that evaluates under it."""
    correct = configs["start"].correct_instruction or task.correct_instruction
    instructions = {}
    for method in (m for m in configs if m != "start"):
        trainer_class = get_method(method_variant(method)[0])[0]
        instructions.setdefault(trainer_class.evaluation_instruction(configs[method], task), method)
    others = [(f"start@{method}", instruction) for instruction, method in instructions.items()
              if instruction != correct]  # fmt: skip
    if correct in instructions or not instructions:
        return [("start", correct), *others]
    return [("start", others[0][1]), *others[1:]]
