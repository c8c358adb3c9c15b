"""`hir demo`: the built-in default, a complete HIR run on CPU."""

from __future__ import annotations

from dataclasses import dataclass, field

from hir.commands import option_parser


@dataclass
class DemoArguments:
    output_dir: str = field(default="runs/demo", metadata={"help": "where the run is written"})
    seed: int = field(
        default=0, metadata={"help": "seeds the model, warm-up, sampling and training"}
    )
    iterations: int | None = field(default=None, metadata={"help": "override the number of HIR iterations"})  # fmt: skip
    report_to: str = field(default="tensorboard", metadata={"help": "tensorboard, wandb, mlflow or none"})  # fmt: skip


def run_demo(args: list[str]) -> None:
    from hir.recipes.demo import run_demo as demo

    (demo_args,) = option_parser("hir demo", DemoArguments).parse(args)
    demo(demo_args.output_dir, seed=demo_args.seed, iterations=demo_args.iterations,
         report_to=demo_args.report_to)  # fmt: skip
