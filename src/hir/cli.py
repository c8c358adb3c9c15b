"""The `hir` command: dispatch to a subcommand (`hir.commands`, one module each), and one line
for every way out. Each subcommand reads its options from dataclasses (`hir.options`):
`--output_dir` or `--output-dir`, `--config run.yaml`, the same task options
(`hir.arguments.TaskArguments`) everywhere."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

from hir.commands.compare import run_compare
from hir.commands.demo import run_demo
from hir.commands.evaluate import run_eval
from hir.commands.models import run_build_model, run_export, run_models
from hir.commands.screen import run_screen
from hir.commands.tasks import run_tasks
from hir.commands.train import run_instructgpt, run_train
from hir.commands.warmup import run_warmup
from hir.errors import HIRError, Terminated

COMMANDS = {
    "train": "run a method: HIR (default), FARL, SFT or PPO (--method; -h lists its options)",
    "compare": "several methods on the same task, starting policy, budget and seeds",
    "instructgpt": "the InstructGPT pipeline: SFT -> reward model -> PPO-ptx (or --final_method hir|farl)",
    "eval": "greedy accuracy of a model on a task's split",
    "screen": "before training: does a model follow both instructions, and can it learn a task from its own samples?",
    "demo": "the built-in default: a complete HIR run on CPU in about 5 minutes",
    "tasks": "`hir tasks list` names the built-in tasks; `hir tasks export TASK` writes prompts",
    "build-model": "build a small untrained model with a tokenizer trained on a task's text",
    "models": "`hir models list` names the built-in models; `hir models fetch NAME` fetches one",
    "export": "a run's trained model as a model folder (--merge folds a LoRA adapter in)",
    "warm-up": "teach a model both instructions on other tasks (an instruction-following start)",
}


def main(argv: list[str] | None = None) -> int:
    """Every way out says why, in one line: bad input (exit 2), Ctrl-C (130), SIGTERM (143),
    anything unexpected (1, the traceback in a log file; `--debug` prints it); a closed output
    pipe ends quietly (141, as a shell reports SIGPIPE)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    previous = _stop_on_sigterm()
    try:
        if not args or args[0] in ("-h", "--help"):
            print(usage())
            return 0 if args else 2
        command, rest = args[0], args[1:]
        if command not in COMMANDS:
            raise HIRError(f"unknown command {command!r}: choose from {', '.join(COMMANDS)}")
        return HANDLERS[command](rest) or 0
    except HIRError as exc:
        print(f"hir: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Whoever read the output stopped reading (`hir ... | head`): nothing went wrong here.
        with contextlib.suppress(OSError, ValueError, AttributeError):  # nor one at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(
            "hir: interrupted; the last checkpoint is intact (--resume continues)", file=sys.stderr
        )
        return 130
    except Terminated:
        print("hir: terminated (SIGTERM); the last checkpoint is intact (--resume continues)",
              file=sys.stderr)  # fmt: skip
        return 143
    except Exception as exc:
        if debug:
            raise
        log = _write_traceback(args)
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"hir: error: {type(exc).__name__}: {first} (the traceback is in {log}; --debug "
              "prints it)", file=sys.stderr)  # fmt: skip
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_on_sigterm():
    """SIGTERM raises `Terminated` (as Ctrl-C raises KeyboardInterrupt), so that a scheduler's
    stop ends the run in one line, its lock released, its last checkpoint intact. Returns the
    handler it replaced (None off the main thread, where handlers cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise Terminated

    return signal.signal(signal.SIGTERM, stop)


def _write_traceback(args: list[str]) -> Path:
    """The current exception's traceback, in the command's --output_dir if it can take it."""
    import tempfile
    import time
    import traceback

    from hir.options import pop_option

    rest, folder = list(args), None
    for spelling in ("output_dir", "output-dir"):
        with contextlib.suppress(HIRError):  # the flag without a value: no folder
            folder = folder or pop_option(rest, spelling)
    name = f"hir-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for where in (Path(folder) if folder else None, Path(tempfile.gettempdir())):
        if where is None:
            continue
        try:
            where.mkdir(parents=True, exist_ok=True)
            path = where / name
            path.write_text(f"hir {' '.join(args)}\n\n{traceback.format_exc()}", encoding="utf-8")
            return path
        except OSError:
            continue
    return Path("(nowhere: no folder could be written)")


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: hir COMMAND [options]   (hir COMMAND -h for its options)", "",
             "Hindsight Instruction Relabeling for Hugging Face language models.", "", "commands:"]  # fmt: skip
    lines += [f"  {name:<{width}}  {text}" for name, text in COMMANDS.items()]
    return "\n".join(lines)


HANDLERS = {"train": run_train, "warm-up": run_warmup, "compare": run_compare, "instructgpt": run_instructgpt,
            "eval": run_eval, "screen": run_screen, "demo": run_demo, "tasks": run_tasks, "build-model": run_build_model,
            "models": run_models, "export": run_export}  # fmt: skip
